"""Chapter 3's library: sinusoidal, learned and rotary positions."""

import math

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
from transformer_lib.positional import rotary_angles, sinusoidal_table

# ---------------------------------------------------------------- sinusoidal


def test_sinusoidal_closed_form():
    d_model, base = 8, 10000.0
    pe = SinusoidalPositionalEncoding(d_model, max_len=50, base=base).pe
    assert pe.shape == (50, 8)
    for pos in (0, 1, 7, 49):
        for i in range(d_model // 2):
            angle = pos / base ** (2 * i / d_model)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert pe[0].tolist() == [0.0, 1.0] * 4


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
    with pytest.raises(ValueError, match="even d_model, got d_model=7"):
        SinusoidalPositionalEncoding(7)
    module = SinusoidalPositionalEncoding(4, max_len=3)
    with pytest.raises(ValueError, match=r"L=4 exceeds max_len=3"):
        module(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"x must be \(B, L, d_model=4\), got shape \(1, 2, 5\)"):
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
    with pytest.raises(ValueError, match=r"L=5 exceeds max_len=4"):
        module(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=r"d_model=2\), got shape \(1, 3, 3\)"):
        module(torch.zeros(1, 3, 3))


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
    # angles are float32 by design, so agreement is to float32 precision
    torch.testing.assert_close(
        RotaryEmbedding(8, interleaved=interleaved)(x), reference(x), atol=1e-6, rtol=1e-5
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
    expected = torch.tensor([[m * 1.0, m * 0.1] for m in (2, 3, 4)])
    torch.testing.assert_close(angles, expected)


def test_rope_errors():
    with pytest.raises(ValueError, match="even head_dim, got head_dim=5"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match=r"head_dim=4\), got shape \(2, 6\)"):
        RotaryEmbedding(4)(torch.zeros(2, 6))
    with pytest.raises(ValueError, match="even head_dim"):
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
    with pytest.raises(ValueError, match="no rotary"):
        MultiHeadAttention(8, 2, rope=RotaryEmbedding(4)).to_torch()
