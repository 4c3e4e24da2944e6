"""The model from token ids to hidden states, with every positional choice wired."""

import math
import re

import pytest
import torch

from transformer_lib import (
    EncoderConfig,
    LearnedPositionalEmbedding,
    SequenceClassifier,
    SinusoidalPositionalEncoding,
    TokenTagger,
    TransformerEncoderModel,
)
from transformer_lib.model import POSITIONAL_ENCODINGS, mean_pool


def config(**kw):
    return EncoderConfig(
        **{"vocab_size": 12, "d_model": 16, "n_heads": 4, "d_ff": 32, "max_len": 20, **kw}
    )


@pytest.mark.parametrize("positional", POSITIONAL_ENCODINGS)
def test_every_positional_choice_is_wired(positional):
    torch.manual_seed(0)
    model = TransformerEncoderModel(config(positional=positional, dropout=0.0)).eval()
    ids = torch.tensor([[3, 5, 7, 9, 0, 0]])
    hidden = model(ids)
    assert hidden.shape == (1, 6, 16)
    kinds = {
        "learned": LearnedPositionalEmbedding,
        "sinusoidal": SinusoidalPositionalEncoding,
        "none": type(None),
        "rotary": type(None),
    }
    assert isinstance(model.positional, kinds[positional])
    has_rope = model.encoder.layers[0].self_attn.rope is not None
    assert has_rope == (positional == "rotary")
    # permuting the real tokens permutes the outputs exactly when there are no positions
    perm = torch.tensor([2, 0, 3, 1, 4, 5])
    permuted = model(ids[:, perm])
    equivariant = torch.allclose(permuted[0, :4], hidden[0, perm[:4]], atol=1e-5)
    assert equivariant == (positional == "none")


def test_padding_is_masked_by_default():
    torch.manual_seed(0)
    model = TransformerEncoderModel(config(dropout=0.0)).eval()
    a = model(torch.tensor([[3, 5, 7, 0, 0]]))
    b = model(torch.tensor([[3, 5, 7, 0, 0, 0, 0]]))
    torch.testing.assert_close(a[:, :3], b[:, :3])  # padding changes nothing for real tokens


def test_token_embedding_scale():
    torch.manual_seed(0)
    scaled = TransformerEncoderModel(config(scale_embedding=True))
    plain = TransformerEncoderModel(config(scale_embedding=False))
    plain.load_state_dict(scaled.state_dict())
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(scaled.token_embedding(ids), plain.token_embedding(ids) * 4.0)
    rms = scaled.token_embedding(torch.arange(12)).pow(2).mean().sqrt().item()
    assert 0.7 < rms < 1.3  # unit scale per coordinate, like the sinusoidal table
    assert math.isclose(scaled.token_embedding.scale, math.sqrt(16))


def test_heads():
    torch.manual_seed(0)
    ids = torch.tensor([[3, 5, 7, 0], [1, 2, 3, 4]])
    assert TokenTagger(config(), n_tags=7)(ids).shape == (2, 4, 7)
    classifier = SequenceClassifier(config(dropout=0.0), n_classes=3).eval()
    assert classifier(ids).shape == (2, 3)
    # padding does not change a sequence's label
    torch.testing.assert_close(classifier(ids[:1, :3]), classifier(ids[:1]))


def test_mean_pool():
    hidden = torch.arange(12.0).reshape(1, 4, 3)
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1))
    pooled = mean_pool(hidden, torch.tensor([[1, 1, 0, 0]]))
    torch.testing.assert_close(pooled, hidden[:, :2].mean(1))
    assert (mean_pool(hidden, torch.zeros(1, 4)) == 0).all()
    with pytest.raises(
        ValueError, match=re.escape("attention_mask must be (B, L) = (1, 4), got shape (4,)")
    ):
        mean_pool(hidden, torch.ones(4))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"positional": "alibi"}, "unknown positional 'alibi'"),
        ({"pad_id": 12}, "pad_id=12 is not a token id of vocab_size=12"),
        ({"n_heads": 3}, "d_model=16 is not divisible by n_heads=3"),
        ({"d_model": 0}, "d_model must be a positive integer, got d_model=0"),
        ({"max_len": -1}, "max_len must be a positive integer, got max_len=-1"),
        ({"vocab_size": 0}, "vocab_size must be a positive integer, got vocab_size=0"),
        ({"n_heads": 0}, "n_heads must be a positive integer, got n_heads=0"),
        ({"d_ff": 0}, "d_ff must be a positive integer, got d_ff=0"),
        ({"n_layers": 0}, "n_layers must be a positive integer, got n_layers=0"),
        ({"d_model": 16.0}, "d_model must be a positive integer, got d_model=16.0"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got dropout=1.0"),
        ({"activation": "tanh"}, "unknown activation='tanh'"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps must be positive, got 0.0"),
        ({"d_model": 12, "n_heads": 4, "positional": "rotary"}, "even head_dim"),
        ({"d_model": 15, "n_heads": 5}, "positional='sinusoidal' needs an even d_model"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_config_errors(change, message):
    """Each bad field is a ValueError that names it (d_model=0 was a ZeroDivisionError)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        config(**change)


def test_model_input_errors():
    model = TransformerEncoderModel(config(positional="learned"))
    with pytest.raises(ValueError, match=re.escape("L=21 exceeds max_len=20")):
        model(torch.ones(1, 21, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("ids must be (B, L), got shape (3,)")):
        model(torch.ones(3, dtype=torch.long))
