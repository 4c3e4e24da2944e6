"""Chapter 1's library: scaled dot-product attention and masks, against PyTorch's SDPA."""

import inspect
import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer_lib import causal_mask, padding_mask, scaled_dot_product_attention
from transformer_lib.attention import check_mask


def random_qkv(batch, l_q, l_k, d_k, d_v, *, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*batch, l_q, d_k, generator=g, dtype=dtype)
    k = torch.randn(*batch, l_k, d_k, generator=g, dtype=dtype)
    v = torch.randn(*batch, l_k, d_v, generator=g, dtype=dtype)
    return q, k, v


def test_matches_the_formula_written_out():
    q, k, v = random_qkv((2,), 3, 5, 4, 6)
    out, weights = scaled_dot_product_attention(q, k, v)
    expected_weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(4), dim=-1)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(out, expected_weights @ v)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    l_q=st.integers(1, 7),
    l_k=st.integers(1, 7),
    d_k=st.integers(1, 8),
    d_v=st.integers(1, 8),
    mask_kind=st.sampled_from(["none", "full", "row", "key"]),
    p_keep=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
def test_property_equals_torch_sdpa(batch, l_q, l_k, d_k, d_v, mask_kind, p_keep, seed):
    q, k, v = random_qkv(tuple(batch), l_q, l_k, d_k, d_v, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    mask_shape = {
        "none": None,
        "full": (*batch, l_q, l_k),
        "row": (l_q, l_k),  # broadcast over the batch
        "key": (*batch, 1, l_k),  # broadcast over queries, like a padding mask
    }[mask_kind]
    mask = None if mask_shape is None else torch.rand(mask_shape, generator=g) < p_keep
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert out.shape == (*batch, l_q, d_v)
    assert weights.shape == (*batch, l_q, l_k)
    assert not out.isnan().any() and not weights.isnan().any()
    if mask is not None:
        fully_masked = ~mask.expand(*batch, l_q, l_k).any(-1)
        # our contract: all-zero weights and output on a fully masked row
        assert (weights[fully_masked] == 0).all()
        assert (out[fully_masked] == 0).all()
        # masked keys get exactly zero weight
        assert (weights.masked_select(~mask.expand_as(weights)) == 0).all()
        row_sums = weights.sum(-1)
        torch.testing.assert_close(
            row_sums[~fully_masked], torch.ones_like(row_sums)[~fully_masked]
        )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_fully_masked_row_gives_zeros_without_nan_in_backward():
    q, k, v = random_qkv((2,), 4, 5, 8, 8, dtype=torch.float64)
    for t in (q, k, v):
        t.requires_grad_(True)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[2] = False  # query 2 may attend to nothing
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    assert (out[:, 2] == 0).all() and (weights[:, 2] == 0).all()
    (out.square().sum() + weights.sum()).backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[:, 2] == 0).all(), "a query that sees nothing gets no gradient"


def test_all_masked_everywhere_is_all_zeros():
    q, k, v = random_qkv((3,), 2, 4, 5, 6)
    out, weights = scaled_dot_product_attention(q, k, v, torch.zeros(2, 4, dtype=torch.bool))
    assert (out == 0).all() and (weights == 0).all()


@pytest.mark.parametrize("mask", [None, "causal", "partial"])
def test_gradcheck_float64(mask):
    q, k, v = random_qkv((2,), 4, 4, 3, 2, dtype=torch.float64, seed=3)
    if mask == "causal":
        m = causal_mask(4)
    elif mask == "partial":
        m = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    else:
        m = None
    inputs = tuple(t.requires_grad_(True) for t in (q, k, v))

    def f(q, k, v):
        out, weights = scaled_dot_product_attention(q, k, v, m)
        return out, weights

    assert torch.autograd.gradcheck(f, inputs)


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert m[i, j] == (j <= i)
    assert causal_mask(0).shape == (0, 0)
    with pytest.raises(ValueError, match="n must be ≥ 0, got -1"):
        causal_mask(-1)


def test_causal_attention_matches_torch_is_causal():
    q, k, v = random_qkv((2, 3), 6, 6, 4, 4)
    out, weights = scaled_dot_product_attention(q, k, v, causal_mask(6))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert (weights.triu(1) == 0).all()


def test_padding_mask():
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]])
    m = padding_mask(ids, pad_id=0)
    assert m.shape == (2, 1, 1, 5) and m.dtype == torch.bool
    assert m[0, 0, 0].tolist() == [True, True, True, False, False]
    assert m[1, 0, 0].tolist() == [True, True, False, False, False]
    with pytest.raises(ValueError, match=r"ids must be \(B, L\), got shape \(5,\)"):
        padding_mask(ids[0], pad_id=0)


def test_padding_mask_hides_padding_from_every_query():
    ids = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    q, k, v = random_qkv((2, 2), 4, 4, 3, 3)  # (B, h, L, d)
    out, weights = scaled_dot_product_attention(q, k, v, padding_mask(ids, 0))
    assert (weights[0, :, :, 3] == 0).all()
    assert (weights[1, :, :, 1:] == 0).all()
    torch.testing.assert_close(weights[1, :, :, 0], torch.ones(2, 4))
    # changing a padded value changes nothing
    v2 = v.clone()
    v2[0, :, 3] += 100.0
    out2, _ = scaled_dot_product_attention(q, k, v2, padding_mask(ids, 0))
    torch.testing.assert_close(out, out2)


def test_dropout_changes_output_not_returned_weights():
    torch.manual_seed(0)
    q, k, v = random_qkv((4,), 8, 8, 4, 4)
    out0, w0 = scaled_dot_product_attention(q, k, v)
    out1, w1 = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    torch.testing.assert_close(w0, w1)
    assert not torch.allclose(out0, out1)


def test_permutation_equivariance():
    q, k, v = random_qkv((), 6, 6, 4, 4)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    out, _ = scaled_dot_product_attention(q, k, v)
    out_p, _ = scaled_dot_product_attention(q[perm], k[perm], v[perm])
    torch.testing.assert_close(out_p, out[perm])


def test_error_q_k_feature_sizes_differ():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match=r"q is \(2, 3, 4\) \(d_k=4\), k is \(2, 5, 6\) \(d_k=6\)"):
        scaled_dot_product_attention(q, k, v)


def test_error_k_v_lengths_differ():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 6, 4)
    with pytest.raises(ValueError, match=r"k is \(2, 5, 4\) \(L_k=5\), v is \(2, 6, 4\) \(L_k=6\)"):
        scaled_dot_product_attention(q, k, v)


def test_error_batch_axes_do_not_broadcast():
    q, k, v = torch.randn(2, 3, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    with pytest.raises(ValueError, match=r"must broadcast: q is \(2, 3, 4\), k is \(3, 5, 4\)"):
        scaled_dot_product_attention(q, k, v)


def test_error_too_few_dims():
    with pytest.raises(
        ValueError, match=r"q must have shape \(..., length, features\), got shape \(4,\)"
    ):
        scaled_dot_product_attention(torch.randn(4), torch.randn(2, 4), torch.randn(2, 4))


def test_error_integer_inputs():
    q = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="q must be floating point, got dtype torch.int64"):
        scaled_dot_product_attention(q, q, q)


def test_error_mask_not_boolean():
    q, k, v = random_qkv((2,), 3, 5, 4, 4)
    with pytest.raises(TypeError, match="mask must be boolean .* got dtype torch.float32"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5))


@pytest.mark.parametrize("shape", [(3, 4), (5, 3), (2, 2, 3, 5), (3, 3, 5)])
def test_error_mask_not_broadcastable(shape):
    q, k, v = random_qkv((2,), 3, 5, 4, 4)
    message = f"mask of shape {tuple(shape)} does not broadcast"
    with pytest.raises(ValueError, match=re.escape(message)):
        scaled_dot_product_attention(q, k, v, torch.ones(shape, dtype=torch.bool))


def test_error_message_names_scores_shape():
    q, k, v = random_qkv((2,), 3, 5, 4, 4)
    with pytest.raises(ValueError, match=r"scores' shape \(2, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 5, dtype=torch.bool))


@pytest.mark.parametrize(
    "mask", [torch.tensor(False), torch.tensor([True, False, True, False, True])]
)
def test_low_rank_masks_broadcast(mask):
    q, k, v = random_qkv((2,), 3, 5, 4, 4)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    expected, expected_weights = scaled_dot_product_attention(q, k, v, mask.expand(2, 3, 5))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_error_mask_on_another_device():
    q, k, v = random_qkv((2,), 3, 5, 4, 4)
    mask = torch.ones(3, 5, dtype=torch.bool, device="meta")
    with pytest.raises(
        ValueError, match=re.escape("mask is on device meta but the inputs are on cpu")
    ):
        scaled_dot_product_attention(q, k, v, mask)


def test_check_mask_returns_a_mask_both_paths_accept():
    assert check_mask(torch.tensor(True), (2, 3, 5)).shape == (3, 5)
    assert check_mask(torch.ones(5, dtype=torch.bool), (2, 3, 5)).shape == (3, 5)
    full = torch.ones(2, 1, 5, dtype=torch.bool)
    assert check_mask(full, (2, 3, 5)) is full


def functions_that_take_a_mask():
    from transformer_lib import (
        EncoderLayer,
        MultiHeadAttention,
        TransformerEncoder,
        TransformerEncoderModel,
    )

    return {
        "scaled_dot_product_attention": scaled_dot_product_attention,
        "check_mask": check_mask,
        "MultiHeadAttention.forward": MultiHeadAttention.forward,
        "EncoderLayer.forward": EncoderLayer.forward,
        "TransformerEncoder.forward": TransformerEncoder.forward,
        "TransformerEncoderModel.forward": TransformerEncoderModel.forward,
    }


@pytest.mark.parametrize("name", list(functions_that_take_a_mask()))
def test_docs_of_every_mask_taker_state_shapes_and_the_padding_trap(name):
    """A Hugging Face (B, L) mask is read as (L_q, L_k) when B == L: the docs must say so."""
    doc = " ".join(inspect.getdoc(functions_that_take_a_mask()[name]).split())
    assert "broadcastable to" in doc or "broadcasts" in doc
    assert "padding_mask" in doc and "(B, 1, 1, L" in doc
    assert "would be read as (L_q, L_k)" in doc


def test_the_padding_trap_is_real_and_padding_mask_avoids_it():
    """(B, L) with B == L broadcasts, as (L_q, L_k): a silent wrong answer, hence the docs."""
    ids = torch.tensor([[5, 6, 0], [7, 0, 0], [8, 9, 4]])  # B = L = 3
    q, k, v = random_qkv((3,), 3, 3, 4, 4)
    right, _ = scaled_dot_product_attention(q, k, v, padding_mask(ids, 0)[:, 0])
    wrong, _ = scaled_dot_product_attention(q, k, v, ids != 0)
    assert not torch.allclose(right, wrong)
    for b in range(3):
        keep = ids[b] != 0
        expected, _ = scaled_dot_product_attention(q[b], k[b][keep], v[b][keep])
        torch.testing.assert_close(right[b], expected)
