"""Chapter 9's library: online softmax, chunked and tiled attention, against PyTorch's SDPA."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from transformer_lib import MultiHeadAttention, causal_mask, efficient, scaled_dot_product_attention
from transformer_lib.efficient import (
    chunked_attention,
    flash_attention,
    online_softmax,
    online_softmax_update,
    tile_counts,
)

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def random_qkv(batch, l_q, l_k, head_dim, d_v, *, dtype=torch.float32, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, l_q, head_dim, generator=g, dtype=dtype)
    k = torch.randn(*batch, l_k, head_dim, generator=g, dtype=dtype)
    v = torch.randn(*batch, l_k, d_v, generator=g, dtype=dtype)
    return tuple(t.requires_grad_(grad) for t in (q, k, v))


def reference_mask(mask, causal, l_q, l_k):
    """The single mask F.scaled_dot_product_attention needs for (mask, causal)."""
    if not causal:
        return mask
    tril = torch.ones(l_q, l_k, dtype=torch.bool).tril()  # top-left aligned, as is_causal
    return tril if mask is None else mask & tril


def assert_matches_sdpa(attention, q, k, v, mask=None, causal=False):
    """Output and the gradients of q, k, v equal torch's SDPA within the dtype's tolerance."""
    tol = TOLERANCE[q.dtype]
    ref_mask = reference_mask(mask, causal, q.shape[-2], k.shape[-2])
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=ref_mask)
    out = attention(q, k, v, mask, causal)
    torch.testing.assert_close(out, expected, atol=tol, rtol=tol)
    grad_out = torch.randn_like(expected)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    for name, got, want in zip("qkv", grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=f"grad of {name}")


def flash(block_q, block_k):
    return lambda q, k, v, mask, causal: flash_attention(
        q, k, v, mask, causal=causal, block_q=block_q, block_k=block_k
    )


def chunked(chunk_size):
    def attention(q, k, v, mask, causal):
        mask = reference_mask(mask, causal, q.shape[-2], k.shape[-2])
        return chunked_attention(q, k, v, mask, chunk_size=chunk_size)

    return attention


# --- online softmax -----------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 3, 4, 16, 100])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_online_softmax_equals_torch_softmax(block_size, dim):
    x = 5 * torch.randn(4, 16, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        online_softmax(x, dim, block_size=block_size), x.softmax(dim), atol=1e-6, rtol=1e-6
    )


def test_online_softmax_update_keeps_the_max_and_the_shifted_sum():
    x = torch.tensor([[1.0, 3.0, -2.0, 7.0, 0.5]])
    running_max, running_sum = torch.tensor([-math.inf]), torch.tensor([0.0])
    for stop in (2, 4, 5):  # blocks x[:, 0:2], x[:, 2:4], x[:, 4:5]
        block = x[:, stop - 2 if stop < 5 else 4 : stop]
        running_max, running_sum = online_softmax_update(running_max, running_sum, block)
        seen = x[:, :stop]
        assert torch.equal(running_max, seen.amax(-1))
        torch.testing.assert_close(running_sum, torch.exp(seen - seen.amax(-1)).sum(-1))
    assert running_max.item() == 7.0


def test_online_softmax_of_large_scores_does_not_overflow():
    x = torch.tensor([[1000.0, 1001.0, 999.0, 1002.0]])  # exp(1000) overflows float32
    out = online_softmax(x, block_size=1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, x.softmax(-1))


# --- flash_attention and chunked_attention against torch's SDPA ---------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    ("block_q", "block_k"), [(1, 1), (3, 5), (7, 2), (64, 64)], ids=lambda b: str(b)
)
@pytest.mark.parametrize(("l_q", "l_k"), [(1, 1), (12, 7), (5, 13)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_equals_sdpa(dtype, block_q, block_k, l_q, l_k, causal):
    q, k, v = random_qkv((2, 3), l_q, l_k, 8, 6, dtype=dtype, grad=True)
    assert_matches_sdpa(flash(block_q, block_k), q, k, v, causal=causal)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("chunk_size", [1, 4, 5, 64])
@pytest.mark.parametrize(("l_q", "l_k"), [(1, 1), (12, 7), (5, 13)])
def test_chunked_equals_sdpa(dtype, chunk_size, l_q, l_k):
    q, k, v = random_qkv((2, 3), l_q, l_k, 8, 6, dtype=dtype, grad=True)
    assert_matches_sdpa(chunked(chunk_size), q, k, v, causal=True)


@pytest.mark.parametrize(
    "mask_shape",
    [(10, 11), (2, 1, 10, 11), (2, 3, 1, 11), (2, 3, 10, 11), (1, 11)],
    ids=["rows", "per-batch", "key-padding", "full", "keys-only"],
)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("attention", [flash(4, 3), chunked(3)], ids=["flash", "chunked"])
def test_masks_broadcast_like_sdpa(mask_shape, causal, attention):
    q, k, v = random_qkv((2, 3), 10, 11, 8, 8, dtype=torch.float64, grad=True)
    mask = torch.rand(mask_shape, generator=torch.Generator().manual_seed(1)) < 0.6
    assert_matches_sdpa(attention, q, k, v, mask, causal)


@pytest.mark.parametrize("attention", [flash(2, 3), chunked(2)], ids=["flash", "chunked"])
def test_fully_masked_rows_give_zero_output_and_zero_gradients(attention):
    q, k, v = random_qkv((2,), 6, 7, 4, 4, dtype=torch.float64, grad=True)
    mask = torch.ones(6, 7, dtype=torch.bool)
    mask[1] = False  # query 1 sees nothing
    mask[4, :3] = False  # query 4's first key block is fully masked, later ones are not
    out = attention(q, k, v, mask, False)
    assert (out[:, 1] == 0).all()
    out.square().sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, 1] == 0).all()
    assert_matches_sdpa(attention, *(t.detach().requires_grad_(True) for t in (q, k, v)), mask=mask)


def test_leading_axes_broadcast_and_gradients_reduce_back():
    q, _, _ = random_qkv((2, 3), 5, 6, 4, 4, dtype=torch.float64, grad=True)
    _, k, v = random_qkv((1, 3), 5, 6, 4, 4, dtype=torch.float64, seed=1, grad=True)
    assert_matches_sdpa(flash(2, 4), q, k, v)
    grads = torch.autograd.grad(flash_attention(q, k, v, block_q=2, block_k=4).sum(), (k, v))
    assert grads[0].shape == k.shape and grads[1].shape == v.shape


def test_causal_with_a_mask_applies_both():
    q, k, v = random_qkv((1,), 8, 8, 4, 4, dtype=torch.float64)
    padding = torch.tensor([True] * 6 + [False] * 2)  # the last two keys are padding
    out = flash_attention(q, k, v, padding, causal=True, block_q=3, block_k=3)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(8) & padding)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


# --- gradcheck in float64 ------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_flash_gradcheck(causal):
    q, k, v = random_qkv((2,), 5, 4, 3, 2, dtype=torch.float64, grad=True)
    mask = torch.tensor([[True, True, False, True]] * 4 + [[False] * 4])  # row 4 fully masked
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash_attention(q, k, v, mask, causal=causal, block_q=2, block_k=3),
        (q, k, v),
    )


def test_chunked_gradcheck():
    q, k, v = random_qkv((1,), 4, 3, 2, 2, dtype=torch.float64, grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: chunked_attention(q, k, v, chunk_size=3), (q, k, v)
    )


def test_dropout_backward_redraws_the_forward_pattern():
    q, k, v = random_qkv((1, 2), 5, 6, 3, 3, dtype=torch.float64, grad=True)

    def dropped(q, k, v):
        torch.manual_seed(0)  # the same pattern on every call gradcheck makes
        return flash_attention(q, k, v, block_q=2, block_k=4, dropout_p=0.4)

    assert torch.autograd.gradcheck(dropped, (q, k, v))
    assert not torch.allclose(dropped(q, k, v), flash_attention(q, k, v, block_q=2, block_k=4))


def test_dropout_is_unbiased():
    q, k, v = random_qkv((1,), 4, 8, 4, 4, dtype=torch.float64)
    torch.manual_seed(0)
    mean = torch.stack(
        [flash_attention(q, k, v, block_q=2, block_k=4, dropout_p=0.3) for _ in range(500)]
    ).mean(0)
    torch.testing.assert_close(mean, flash_attention(q, k, v), atol=0.1, rtol=0)


# --- property test over shapes, blocks and masks --------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    l_q=st.integers(1, 9),
    l_k=st.integers(1, 9),
    head_dim=st.integers(1, 6),
    block_q=st.integers(1, 10),
    block_k=st.integers(1, 10),
    causal=st.booleans(),
    p_keep=st.sampled_from([None, 0.0, 0.3, 0.8, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_property_flash_and_chunked_equal_sdpa(
    batch, l_q, l_k, head_dim, block_q, block_k, causal, p_keep, seed
):
    q, k, v = random_qkv(tuple(batch), l_q, l_k, head_dim, 3, seed=seed, grad=True)
    g = torch.Generator().manual_seed(seed + 1)
    mask = None if p_keep is None else torch.rand(*batch, l_q, l_k, generator=g) < p_keep
    assert_matches_sdpa(flash(block_q, block_k), q, k, v, mask, causal)
    assert_matches_sdpa(chunked(block_q), q, k, v, mask, causal)


# --- what tiling buys: counted tiles, and no L x L tensor ------------------------------------


def test_causal_tile_counts_are_the_triangle():
    # 8 query blocks x 8 key blocks; causal keeps the 8·9/2 = 36 on or below the diagonal
    assert tile_counts(64, 64, block_q=8, block_k=8, causal=True).computed == 36
    assert tile_counts(64, 64, block_q=8, block_k=8, causal=True).skipped == 28
    assert tile_counts(64, 64, block_q=8, block_k=8).skipped == 0
    assert tile_counts(10, 7, block_q=4, block_k=3, causal=True).total == 3 * 3


def test_the_kernel_computes_exactly_the_counted_tiles(monkeypatch):
    calls = []
    original = efficient._tile_scores
    monkeypatch.setattr(efficient, "_tile_scores", lambda *args: calls.append(1) or original(*args))
    q, k, v = random_qkv((1,), 10, 7, 4, 4, grad=True)
    out = flash_attention(q, k, v, causal=True, block_q=4, block_k=3)
    counts = tile_counts(10, 7, block_q=4, block_k=3, causal=True)
    assert len(calls) == counts.computed and counts.skipped > 0
    out.sum().backward()  # the backward recomputes the same tiles, no more
    assert len(calls) == 2 * counts.computed


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operator creates."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(
    "attention",
    [
        lambda q, k, v: flash_attention(q, k, v, causal=True, block_q=32, block_k=32),
        lambda q, k, v: chunked_attention(q, k, v, chunk_size=32),
    ],
    ids=["flash", "chunked"],
)
def test_no_l_by_l_tensor_in_forward_or_backward(attention):
    L = 128
    q, k, v = random_qkv((2,), L, L, 8, 8, grad=True)
    with LargestTensor() as seen:
        attention(q, k, v).sum().backward()
    assert seen.largest <= 2 * 32 * L  # one chunk of scores at most: 2 heads x 32 x L
    with LargestTensor() as naive:  # the recorder does see an L x L tensor when there is one
        scaled_dot_product_attention(q, k, v)[0].sum().backward()
    assert naive.largest >= 2 * L * L


# --- MultiHeadAttention uses the kernel on request --------------------------------------------


@pytest.mark.parametrize("with_mask", [False, True])
def test_multi_head_attention_flash_equals_default(with_mask):
    torch.manual_seed(0)
    default = MultiHeadAttention(16, 4).double()
    tiled = MultiHeadAttention(16, 4, attention="flash").double()
    tiled.load_state_dict(default.state_dict())
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = causal_mask(9) if with_mask else None
    torch.testing.assert_close(tiled(x, mask), default(x, mask), atol=1e-12, rtol=1e-12)
    grads = torch.autograd.grad(tiled(x, mask).sum(), list(tiled.parameters()))
    expected = torch.autograd.grad(default(x, mask).sum(), list(default.parameters()))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)


def test_multi_head_attention_rejects_an_unknown_kernel():
    with pytest.raises(ValueError, match=re.escape("attention must be one of")):
        MultiHeadAttention(16, 4, attention="fast")


# --- errors name what is wrong ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"block_q": 0}, ValueError, "block_q must be an integer ≥ 1, got 0"),
        ({"block_k": -2}, ValueError, "block_k must be an integer ≥ 1, got -2"),
        ({"block_q": 2.5}, ValueError, "block_q must be an integer ≥ 1, got 2.5"),
        ({"dropout_p": 1.0}, ValueError, "dropout_p must be in [0, 1), got 1.0"),
    ],
)
def test_flash_rejects_bad_arguments(kwargs, error, message):
    q, k, v = random_qkv((1,), 4, 4, 2, 2)
    with pytest.raises(error, match=re.escape(message)):
        flash_attention(q, k, v, **kwargs)


@pytest.mark.parametrize(
    "call",
    [
        lambda q, k, v, m: flash_attention(q, k, v, m),
        lambda q, k, v, m: chunked_attention(q, k, v, m, chunk_size=2),
    ],
    ids=["flash", "chunked"],
)
def test_bad_masks_and_shapes_are_named(call):
    q, k, v = random_qkv((1,), 4, 5, 2, 2)
    with pytest.raises(TypeError, match=re.escape("mask must be boolean")):
        call(q, k, v, torch.ones(4, 5))
    with pytest.raises(ValueError, match=re.escape("mask of shape (3, 5) does not broadcast")):
        call(q, k, v, torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=re.escape("k and v must have the same length L_k")):
        call(q, k, v[..., :4, :], None)
    with pytest.raises(ValueError, match=re.escape("q and k must have the same feature size")):
        call(q[..., :1], k, v, None)
    with pytest.raises(TypeError, match=re.escape("q, k, v must share one dtype")):
        call(q.double(), k, v, None)


def test_other_block_size_errors():
    with pytest.raises(ValueError, match=re.escape("chunk_size must be an integer ≥ 1, got 0")):
        chunked_attention(*random_qkv((1,), 2, 2, 2, 2), chunk_size=0)
    with pytest.raises(ValueError, match=re.escape("block_size must be an integer ≥ 1, got 0")):
        online_softmax(torch.ones(3), block_size=0)
    with pytest.raises(TypeError, match=re.escape("x must be floating point")):
        online_softmax(torch.ones(3, dtype=torch.long), block_size=1)
