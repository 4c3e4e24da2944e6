"""Chapter 4's library: FeedForward, EncoderLayer, TransformerEncoder against PyTorch's modules.

The converters' own checks (exactness, devices, refusals) are in test_interop.py.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_lib import (
    EncoderLayer,
    FeedForward,
    MultiHeadAttention,
    RotaryEmbedding,
    TransformerEncoder,
    causal_mask,
)

KEEP = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)


def randomise_(module):
    """Give LayerNorms and biases non-trivial values so that parity tests can fail."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(mean=1.0 if name.endswith("weight") else 0.0, std=0.2)
    return module


def torch_layer(norm_first, activation, *, d_model=16, n_heads=4, d_ff=32, bias=True):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        d_model,
        n_heads,
        d_ff,
        dropout=0.1,
        activation=activation,
        batch_first=True,
        norm_first=norm_first,
        bias=bias,
    )
    return randomise_(layer).eval()


def test_feed_forward_formula_and_names():
    ff = FeedForward(8, 32, activation="gelu")
    assert [n for n, _ in ff.named_children()] == ["linear1", "linear2", "dropout"]
    x = torch.randn(2, 3, 8)
    expected = ff.linear2(F.gelu(ff.linear1(x), approximate="none"))
    torch.testing.assert_close(ff(x), expected)
    relu = FeedForward(8, 32)
    torch.testing.assert_close(relu(x), relu.linear2(torch.relu(relu.linear1(x))))


def test_feed_forward_errors():
    with pytest.raises(
        ValueError, match=re.escape("unknown activation 'swish'; expected one of ['gelu', 'relu']")
    ):
        FeedForward(8, 16, activation="swish")
    with pytest.raises(ValueError, match=re.escape("d_ff=0")):
        FeedForward(8, 0)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layer_equals_torch(norm_first, activation):
    theirs = torch_layer(norm_first, activation)
    ours = EncoderLayer.from_torch(theirs).eval()
    assert ours.norm_first == norm_first and ours.ff.activation == activation
    x = torch.randn(3, 6, 16)
    mask = KEEP[:, None, None, :]
    expected = theirs(x, src_key_padding_mask=~KEEP)
    torch.testing.assert_close(ours(x, mask), expected)
    torch.testing.assert_close(ours(x, mask, return_weights=True)[0], expected)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x, causal_mask(6)), theirs(x, src_mask=~causal_mask(6)))


def test_layer_without_bias_equals_torch():
    theirs = torch_layer(False, "relu", bias=False)
    ours = EncoderLayer.from_torch(theirs).eval()
    assert ours.norm1.bias is None and ours.ff.linear1.bias is None
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_equals_torch(norm_first, activation):
    layer = torch_layer(norm_first, activation)
    norm = randomise_(nn.LayerNorm(16)) if norm_first else None
    theirs = nn.TransformerEncoder(layer, num_layers=3, norm=norm, enable_nested_tensor=False)
    with torch.no_grad():  # the layers are deep copies: make them differ
        for i, lyr in enumerate(theirs.layers):
            lyr.linear1.weight.mul_(1 + 0.1 * i)
    theirs.eval()
    ours = TransformerEncoder.from_torch(theirs).eval()
    assert len(ours.layers) == 3 and (ours.norm is not None) == norm_first
    x = torch.randn(3, 6, 16)
    expected = theirs(x, src_key_padding_mask=~KEEP)
    got, weights = ours(x, KEEP[:, None, None, :], return_weights=True)
    torch.testing.assert_close(got, expected)
    assert len(weights) == 3 and weights[0].shape == (3, 4, 6, 6)
    torch.testing.assert_close(ours(x, KEEP[:, None, None, :]), expected)


@pytest.mark.parametrize("norm_first", [False, True])
def test_to_torch_round_trip(norm_first):
    torch.manual_seed(0)
    ours = randomise_(TransformerEncoder(2, 16, 4, 32, norm_first=norm_first, activation="gelu"))
    ours.eval()
    theirs = ours.to_torch().eval()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(theirs(x), ours(x))
    back = TransformerEncoder.from_torch(theirs)
    for (k1, a), (k2, b) in zip(ours.state_dict().items(), back.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(a, b)


def test_post_ln_and_pre_ln_are_the_visible_branch():
    torch.manual_seed(0)
    layer = EncoderLayer(8, 2, 16, dropout=0.0).eval()
    x = torch.randn(2, 4, 8)
    a = layer.self_attn(x)
    post = layer.norm2(layer.norm1(x + a) + layer.ff(layer.norm1(x + a)))
    torch.testing.assert_close(layer(x), post)
    layer.norm_first = True
    h = x + layer.self_attn(layer.norm1(x))
    pre = h + layer.ff(layer.norm2(h))
    torch.testing.assert_close(layer(x), pre)


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradient_reaches_every_parameter(norm_first):
    torch.manual_seed(0)
    encoder = TransformerEncoder(3, 16, 4, 32, norm_first=norm_first, dropout=0.1)
    x = torch.randn(2, 5, 16, requires_grad=True)
    encoder(x, KEEP[:2, None, None, :5]).pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert torch.isfinite(x.grad).all()


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = EncoderLayer(8, 2, 16, dropout=0.5)
    x = torch.randn(2, 4, 8)
    assert not torch.allclose(layer(x), layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))


def test_rope_is_passed_to_every_layer():
    rope = RotaryEmbedding(4)
    encoder = TransformerEncoder(2, 16, 4, 32, rope=rope)
    assert all(layer.self_attn.rope is rope for layer in encoder.layers)


def test_layer_input_errors():
    layer = EncoderLayer(16, 4, 32)
    with pytest.raises(
        ValueError, match=re.escape("x must be (B, L, d_model=16), got shape (2, 5, 8)")
    ):
        layer(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=re.escape("mask of shape (3, 3) does not broadcast")):
        layer(torch.randn(2, 5, 16), torch.ones(3, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EncoderLayer(10, 4, 32), "d_model=10 is not divisible by n_heads=4"),
        (lambda: EncoderLayer(8, 2, 16, activation="tanh"), "unknown activation 'tanh'"),
        (lambda: TransformerEncoder(0, 8, 2, 16), "n_layers must be at least 1, got 0"),
    ],
    ids=["divisible", "activation", "n_layers"],
)
def test_construction_errors(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_parameter_count_formula():
    d, h, d_ff, n = 32, 4, 128, 3
    per_layer = (4 * d * d + 4 * d) + (2 * d * d_ff + d_ff + d) + 2 * (2 * d)
    for norm_first, extra in ((False, 0), (True, 2 * d)):
        encoder = TransformerEncoder(n, d, h, d_ff, norm_first=norm_first)
        assert sum(p.numel() for p in encoder.parameters()) == n * per_layer + extra
    assert isinstance(encoder.layers[0].self_attn, MultiHeadAttention)
