"""The decoder of Chapter 8: parity with PyTorch, causality, the KV cache, clear errors."""

import re

import pytest
import torch
from torch import nn

from transformer_lib import padding_mask
from transformer_lib.attention import causal_mask
from transformer_lib.decoder import DecoderLayer, KVCache, TransformerDecoder
from transformer_lib.encoder import EncoderLayer, TransformerEncoder
from transformer_lib.positional import RotaryEmbedding

D, H, FF = 16, 4, 32
TGT = torch.tensor([[5, 3, 8, 2, 0, 0], [7, 1, 4, 4, 6, 9]])  # target ids, 0 = padding
SRC = torch.tensor([[4, 4, 1, 0, 0], [2, 9, 3, 3, 7]])  # source ids: lengths 3 and 5


def masks():
    """Ours (True = may attend) for the self-attention and the memory."""
    self_mask = causal_mask(TGT.shape[1]) & padding_mask(TGT, 0)  # (B, 1, T, T)
    return self_mask, padding_mask(SRC, 0)  # (B, 1, 1, S)


def torch_masks():
    """PyTorch's (True = blocked)."""
    return {
        "tgt_mask": ~causal_mask(TGT.shape[1]),
        "tgt_key_padding_mask": TGT == 0,
        "memory_key_padding_mask": SRC == 0,
    }


def inputs(dtype=torch.float32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, TGT.shape[1], D, generator=generator, dtype=dtype)
    memory = torch.randn(2, SRC.shape[1], D, generator=generator, dtype=dtype)
    return x, memory


def real_rows(t):
    """The target positions that are not padding (PyTorch leaves those free)."""
    return t[TGT != 0]


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layer_equals_torch(norm_first, activation):
    torch.manual_seed(0)
    theirs = nn.TransformerDecoderLayer(
        D, H, FF, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    ours = DecoderLayer.from_torch(theirs).eval()
    x, memory = inputs()
    self_mask, memory_mask = masks()
    with torch.no_grad():
        expected = theirs(x, memory, **torch_masks())
        got = ours(x, memory, self_mask=self_mask, memory_mask=memory_mask)
    torch.testing.assert_close(real_rows(got), real_rows(expected), atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_layer_round_trip_is_exact_in_float64(norm_first, activation):
    torch.manual_seed(0)
    ours = DecoderLayer(D, H, FF, activation=activation, norm_first=norm_first).double().eval()
    theirs = ours.to_torch()
    assert isinstance(theirs, nn.TransformerDecoderLayer) and theirs.self_attn.batch_first
    assert (
        theirs.norm_first == norm_first and theirs.self_attn.in_proj_weight.dtype == torch.float64
    )
    back = DecoderLayer.from_torch(theirs)
    for (name, p), (_, q) in zip(ours.state_dict().items(), back.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    x, memory = inputs(torch.float64)
    self_mask, memory_mask = masks()
    with torch.no_grad():
        expected = theirs(x, memory, **torch_masks())
        got = ours(x, memory, self_mask=self_mask, memory_mask=memory_mask)
    torch.testing.assert_close(real_rows(got), real_rows(expected), atol=1e-12, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_stack_equals_torch_and_round_trips(norm_first):
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(
        D, H, FF, activation="gelu", batch_first=True, norm_first=norm_first
    )
    theirs = nn.TransformerDecoder(
        layer, num_layers=3, norm=nn.LayerNorm(D) if norm_first else None
    ).eval()
    ours = TransformerDecoder.from_torch(theirs).eval()
    assert len(ours.layers) == 3 and (ours.norm is not None) == norm_first
    x, memory = inputs()
    self_mask, memory_mask = masks()
    with torch.no_grad():
        expected = theirs(x, memory, **torch_masks())
        got = ours(x, memory, self_mask=self_mask, memory_mask=memory_mask)
        again = ours.to_torch().eval()(x, memory, **torch_masks())
    torch.testing.assert_close(real_rows(got), real_rows(expected), atol=1e-5, rtol=0)
    torch.testing.assert_close(real_rows(again), real_rows(expected), atol=0, rtol=0)


def test_final_norm_must_match_norm_first():
    layer = nn.TransformerDecoderLayer(D, H, FF, batch_first=True, norm_first=False)
    with pytest.raises(ValueError, match=re.escape("post-LN (norm_first=False) decoder")):
        TransformerDecoder.from_torch(nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(D)))
    with pytest.raises(ValueError, match="batch_first"):
        DecoderLayer.from_torch(nn.TransformerDecoderLayer(D, H, FF))


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # nn.Transformer's own
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_nn_transformer_equals_our_encoder_and_decoder(norm_first):
    torch.manual_seed(0)
    theirs = nn.Transformer(
        D, H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF,
        batch_first=True, norm_first=norm_first,
    ).eval()  # fmt: skip
    src, tgt = inputs()
    tgt, src = src[:, :4], tgt  # any lengths
    with torch.no_grad():
        expected = theirs(src, tgt, tgt_mask=~causal_mask(4))
        if norm_first:  # a pre-LN stack ends with its LayerNorm, as ours
            encoder = TransformerEncoder.from_torch(theirs.encoder).eval()
            decoder = TransformerDecoder.from_torch(theirs.decoder).eval()
            got = decoder(tgt, encoder(src))
        else:  # nn.Transformer adds a LayerNorm after post-LN stacks too: apply it by hand
            encoder, decoder = TransformerEncoder(2, D, H, FF), TransformerDecoder(2, D, H, FF)
            encoder.layers = nn.ModuleList(map(EncoderLayer.from_torch, theirs.encoder.layers))
            decoder.layers = nn.ModuleList(map(DecoderLayer.from_torch, theirs.decoder.layers))
            memory = theirs.encoder.norm(encoder.eval()(src))
            got = theirs.decoder.norm(decoder.eval()(tgt, memory))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_causality_a_future_token_changes_no_earlier_output_exactly():
    torch.manual_seed(0)
    decoder = TransformerDecoder(2, D, H, FF, norm_first=True).eval()
    x, memory = inputs()
    changed = x.clone()
    changed[:, 4] = torch.randn(2, D)  # change position 4 only
    for return_weights in (False, True):  # both attention paths
        with torch.no_grad():
            before = decoder(x, memory, return_weights=return_weights)
            after = decoder(changed, memory, return_weights=return_weights)
        if return_weights:
            before, after = before[0], after[0]
        assert torch.equal(before[:, :4], after[:, :4])  # exactly, bit for bit
        assert not torch.allclose(before[:, 4:], after[:, 4:])  # the change is seen from 4 on


def test_default_self_mask_is_causal():
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, FF, dropout=0.0).eval()
    x, memory = inputs()
    with torch.no_grad():
        _, weights = layer(x, memory, return_weights=True)
    assert weights.self_attn.shape == (2, H, 6, 6) and weights.cross_attn.shape == (2, H, 6, 5)
    assert torch.equal(weights.self_attn.triu(1), torch.zeros_like(weights.self_attn))


def step_by_step(decoder, x, memory, memory_mask, first=1):
    """Decode with a cache: the first ``first`` positions at once, then one per step."""
    cache = KVCache(len(decoder.layers))
    outs = [decoder(x[:, :first], memory, memory_mask=memory_mask, cache=cache)]
    for t in range(first, x.shape[1]):
        outs.append(decoder(x[:, t : t + 1], memory, memory_mask=memory_mask, cache=cache))
    return torch.cat(outs, dim=1), cache


@pytest.mark.parametrize("rope", [False, True], ids=["no-rope", "rope"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("first", [1, 3])
def test_cached_decoding_equals_uncached(rope, norm_first, first):
    torch.manual_seed(0)
    decoder = TransformerDecoder(
        2, D, H, FF, norm_first=norm_first, rope=RotaryEmbedding(D // H) if rope else None
    ).eval()
    x, memory = inputs()
    _, memory_mask = masks()  # padded memory: sources of lengths 3 and 5
    with torch.no_grad():
        full = decoder(x, memory, memory_mask=memory_mask)
        cached, cache = step_by_step(decoder, x, memory, memory_mask, first)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    # what is stored: 2 · n_layers · B · L · d_model numbers, and the memory's once
    assert cache.length == 6 and cache.batch_size == 2
    assert cache.numel("self") == 2 * 2 * 2 * 6 * D
    assert cache.numel("cross") == 2 * 2 * 2 * 5 * D
    assert cache.layers[0].self_keys.shape == (2, H, 6, D // H)


def test_rope_needs_the_cache_offset():
    """The control: rotating the cached step's query at position 0 gives another output."""
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, FF, rope=RotaryEmbedding(D // H)).eval()
    x, memory = inputs()
    cache = KVCache(1).layers[0]
    with torch.no_grad():
        layer(x[:, :5], memory, cache=cache)
        keys, values = cache.self_keys, cache.self_values
        new_keys, new_values = layer.self_attn.keys_values(layer_input := x[:, 5:], offset=0)
        wrong = layer.self_attn.attend(
            layer_input,
            torch.cat([keys, new_keys], -2),
            torch.cat([values, new_values], -2),
            offset=0,
        )
        right_keys, _ = layer.self_attn.keys_values(layer_input, offset=5)
        right = layer.self_attn.attend(
            layer_input,
            torch.cat([keys, right_keys], -2),
            torch.cat([values, new_values], -2),
            offset=5,
        )
        reference = layer.self_attn(x)[:, 5:]  # uncached, causal by construction at the end
    torch.testing.assert_close(right, reference, atol=1e-5, rtol=0)
    assert not torch.allclose(wrong, reference, atol=1e-3)


def test_clear_errors():
    torch.manual_seed(0)
    decoder = TransformerDecoder(2, D, H, FF).eval()
    x, memory = inputs()
    with pytest.raises(ValueError, match=re.escape("memory must be (B, L, d_model=16)")):
        decoder(x, memory[..., :8])
    with pytest.raises(ValueError, match="same batch size"):
        decoder(x, memory[:1])
    cache = KVCache(2)
    decoder(x[:, :2], memory, cache=cache)
    with pytest.raises(ValueError, match=re.escape("the cache holds a batch of B=2")):
        decoder(x[:1, 2:3], memory[:1], cache=cache)
    with pytest.raises(ValueError, match=re.escape("memory of length L_s=5")):
        decoder(x[:, 2:3], memory[:, :3], cache=cache)
    with pytest.raises(ValueError, match=re.escape("the cache has 3 layers, the decoder 2")):
        decoder(x, memory, cache=KVCache(3))
    with pytest.raises(ValueError, match="n_layers must be at least 1"):
        KVCache(0)
