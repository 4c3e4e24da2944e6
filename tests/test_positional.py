"""Chapter 3's library: sinusoidal, learned and rotary positions."""

import math
import re

import pytest
import torch
from einops import rearrange

from transformer_lib import (
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    scaled_dot_product_attention,
)
from transformer_lib.positional import apply_rotary, rotary_angles, sinusoidal_table

# ---------------------------------------------------------------- sinusoidal


@pytest.mark.parametrize("pos", [0, 1, 7, 49])
@pytest.mark.parametrize("i", range(4))
def test_sinusoidal_closed_form(pos, i):
    d_model, base = 8, 10000.0
    pe = SinusoidalPositionalEncoding(d_model, max_len=50, base=base).pe
    assert pe.shape == (50, 8)
    angle = pos / base ** (2 * i / d_model)
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_position_zero():
    assert SinusoidalPositionalEncoding(8, max_len=2).pe[0].tolist() == [0.0, 1.0] * 4


def test_sinusoidal_adds_table_and_is_not_in_state_dict():
    module = SinusoidalPositionalEncoding(6, max_len=20)
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(module(x), x + sinusoidal_table(20, 6)[:5])
    assert "pe" not in module.state_dict()
    assert not list(module.parameters())


def test_sinusoidal_shift_is_a_rotation():
    """PE(p + k) = R_k PE(p), R_k block-diagonal with one 2x2 rotation per frequency."""
    d_model, k = 8, 5
    pe = sinusoidal_table(40, d_model).double()
    freqs = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    rotation = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i, w in enumerate(freqs):
        c, s = math.cos(k * w), math.sin(k * w)
        # (sin a, cos a) -> (sin(a + kw), cos(a + kw))
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, s], [-s, c]])
    torch.testing.assert_close(pe[:-k] @ rotation.T, pe[k:], atol=1e-5, rtol=0)


def test_sinusoidal_errors():
    with pytest.raises(ValueError, match=re.escape("even d_model, got d_model=7")):
        SinusoidalPositionalEncoding(7)
    module = SinusoidalPositionalEncoding(4, max_len=3)
    with pytest.raises(ValueError, match=re.escape("L=4 exceeds max_len=3")):
        module(torch.zeros(1, 4, 4))
    with pytest.raises(
        ValueError, match=re.escape("x must be (B, L, d_model=4), got shape (1, 2, 5)")
    ):
        module(torch.zeros(1, 2, 5))


# ---------------------------------------------------------------- learned


def test_learned_adds_one_trained_vector_per_position():
    module = LearnedPositionalEmbedding(4, max_len=10)
    x = torch.randn(3, 6, 4)
    torch.testing.assert_close(module(x), x + module.embedding.weight[:6])
    module(x).sum().backward()
    grad = module.embedding.weight.grad
    assert (grad[:6] != 0).all() and (grad[6:] == 0).all()


def test_learned_errors():
    module = LearnedPositionalEmbedding(2, 4)
    with pytest.raises(ValueError, match=re.escape("L=5 exceeds max_len=4")):
        module(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=re.escape("d_model=2), got shape (1, 3, 3)")):
        module(torch.zeros(1, 3, 3))


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (LearnedPositionalEmbedding, (8, -1), "max_len must be a positive integer, got max_len=-1"),
        (LearnedPositionalEmbedding, (0, 8), "d_model must be a positive integer, got d_model=0"),
        (SinusoidalPositionalEncoding, (8, 0), "max_len must be a positive integer, got max_len=0"),
    ],
    ids=["learned-max_len", "learned-d_model", "sinusoidal-max_len"],
)
def test_positional_sizes_must_be_positive(module, args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        module(*args)


def test_learned_keeps_the_dtype_of_its_input():
    """It used to promote float16 inputs to float32 (the table's dtype)."""
    module = LearnedPositionalEmbedding(4, 10)
    x = torch.randn(2, 3, 4).half()
    out = module(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, (x.float() + module.embedding.weight[:3]).half())
    assert module(x.double()).dtype == torch.float64


# ---------------------------------------------------------------- rotary


def reference_rope_split_half(x, base=10000.0):
    """Hugging Face Llama style, written independently: x*cos + rotate_half(x)*sin."""
    L, d = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    freqs = torch.outer(torch.arange(L, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    rotate_half = torch.cat([-x2, x1], dim=-1)
    return x * emb.cos() + rotate_half * emb.sin()


def reference_rope_interleaved(x, base=10000.0):
    """RoFormer paper, eq. (34), written out pair by pair."""
    L, d = x.shape[-2], x.shape[-1]
    out = torch.empty_like(x)
    for m in range(L):
        for i in range(d // 2):
            theta = base ** (-2 * i / d)
            c, s = math.cos(m * theta), math.sin(m * theta)
            a, b = x[..., m, 2 * i], x[..., m, 2 * i + 1]
            out[..., m, 2 * i] = a * c - b * s
            out[..., m, 2 * i + 1] = a * s + b * c
    return out


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_matches_reference(interleaved):
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    reference = reference_rope_interleaved if interleaved else reference_rope_split_half
    # angles are float64, so float64 inputs agree to float64 precision
    torch.testing.assert_close(
        RotaryEmbedding(8, interleaved=interleaved)(x), reference(x), atol=1e-12, rtol=1e-12
    )


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_scores_depend_only_on_distance(interleaved):
    rope = RotaryEmbedding(16, interleaved=interleaved)
    L = 12
    q = torch.randn(16, dtype=torch.float64).expand(L, 16)  # the same query at every position
    k = torch.randn(16, dtype=torch.float64).expand(L, 16)
    scores = rope(q) @ rope(k).T  # scores[m, n] = <R_m q, R_n k>
    for shift in range(1, 4):
        torch.testing.assert_close(
            scores[shift:, shift:], scores[:-shift, :-shift], atol=1e-5, rtol=1e-5
        )
    # and the rotation preserves norms
    torch.testing.assert_close(rope(q).norm(dim=-1), q.norm(dim=-1))


def test_rope_layouts_equal_up_to_a_fixed_permutation():
    d = 8
    perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # interleaved -> halves
    x = torch.randn(2, 5, d, dtype=torch.float64)
    interleaved = RotaryEmbedding(d, interleaved=True)(x)
    split = RotaryEmbedding(d, interleaved=False)(x[..., perm])
    torch.testing.assert_close(split, interleaved[..., perm])


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_offset_equals_slice_of_longer_sequence(interleaved):
    rope = RotaryEmbedding(6, interleaved=interleaved)
    x = torch.randn(2, 10, 6)
    torch.testing.assert_close(rope(x[:, 4:], offset=4), rope(x)[:, 4:])


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_gradcheck(interleaved):
    rope = RotaryEmbedding(4, interleaved=interleaved)
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rope, (x,))


def test_rope_half_precision_is_computed_in_float32():
    rope = RotaryEmbedding(64)
    x = torch.randn(1, 512, 64)
    out = rope(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rope(x), atol=0.05, rtol=0.02)


def test_rotary_angles():
    angles = rotary_angles(3, 4, base=100.0, offset=2)
    assert angles.dtype == torch.float64
    expected = torch.tensor([[m * 1.0, m * 0.1] for m in (2, 3, 4)], dtype=torch.float64)
    torch.testing.assert_close(angles, expected)


def exact_rope(x, offset, base=10000.0):
    """Split-half RoPE with every angle computed by Python's float64 math, one by one."""
    L, d = x.shape[-2], x.shape[-1]
    out = torch.empty_like(x, dtype=torch.float64)
    x = x.double()
    for m in range(L):
        for i in range(d // 2):
            angle = (offset + m) * base ** (-2 * i / d)
            c, s = math.cos(angle), math.sin(angle)
            a, b = x[..., m, i], x[..., m, i + d // 2]
            out[..., m, i] = a * c - b * s
            out[..., m, i + d // 2] = a * s + b * c
    return out


def test_rope_float64_is_exact_at_large_positions():
    """Angles were float32: 1e-3 off at position 16 000; now 1e-9 at position 10^6."""
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    for offset in (16_000, 10**6):
        got = RotaryEmbedding(8)(x, offset=offset)
        assert (got - exact_rope(x, offset)).abs().max() < 1e-9, offset


def test_rope_float32_at_offset_beyond_float32_integers():
    """2**24 + 1 is not a float32: the rotation was of position 2**24, completely wrong."""
    offset = 2**24 + 1
    x = torch.randn(2, 5, 8)
    got = RotaryEmbedding(8)(x, offset=offset)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact_rope(x, offset), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_rope_refuses_non_floating_inputs(dtype):
    """An integer vector used to be rotated and truncated back to integers."""
    x = torch.ones(2, 3, 4, dtype=dtype)
    with pytest.raises(TypeError, match=re.escape(f"x must be floating point, got dtype {dtype}")):
        RotaryEmbedding(4)(x)
    with pytest.raises(TypeError, match=re.escape("apply_rotary: x must be floating point")):
        apply_rotary(x, rotary_angles(3, 4))


def test_rope_errors():
    with pytest.raises(ValueError, match=re.escape("even head_dim, got head_dim=5")):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match=re.escape("head_dim=4), got shape (2, 6)")):
        RotaryEmbedding(4)(torch.zeros(2, 6))
    with pytest.raises(ValueError, match=re.escape("even head_dim")):
        rotary_angles(3, 3)


@pytest.mark.parametrize("interleaved", [False, True])
def test_multi_head_attention_rotates_queries_and_keys_not_values(interleaved):
    torch.manual_seed(0)
    rope = RotaryEmbedding(4, interleaved=interleaved)
    mha = MultiHeadAttention(16, 4, rope=rope).eval()
    x = torch.randn(2, 6, 16)
    out, weights = mha(x, return_weights=True)

    def split(t):
        return rearrange(t, "b l (h d) -> b h l d", h=4)

    q, k, v = split(mha.q_proj(x)), split(mha.k_proj(x)), split(mha.v_proj(x))
    heads, expected_weights = scaled_dot_product_attention(rope(q), rope(k), v)
    expected = mha.out_proj(rearrange(heads, "b h l d -> b l (h d)"))
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(mha(x), out)  # the fast path rotates too


def test_multi_head_attention_with_rope_sees_order():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4, rope=RotaryEmbedding(4)).eval()
    x = torch.randn(1, 5, 16)
    perm = torch.tensor([4, 2, 0, 1, 3])
    assert not torch.allclose(mha(x[:, perm]), mha(x)[:, perm], atol=1e-4)
    plain = MultiHeadAttention(16, 4).eval()
    torch.testing.assert_close(plain(x[:, perm]), plain(x)[:, perm])


def test_to_torch_refuses_rope():
    with pytest.raises(ValueError, match=re.escape("no rotary")):
        MultiHeadAttention(8, 2, rope=RotaryEmbedding(4)).to_torch()
