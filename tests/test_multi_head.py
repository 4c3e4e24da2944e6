"""Chapter 2's library: MultiHeadAttention against torch.nn.MultiheadAttention."""

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from transformer_lib import MultiHeadAttention, causal_mask, padding_mask


def pair(d_model=16, n_heads=4, *, bias=True, seed=0):
    torch.manual_seed(seed)
    theirs = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True)
    if bias:  # torch initialises biases to zero; make them matter
        with torch.no_grad():
            theirs.in_proj_bias.normal_()
            theirs.out_proj.bias.normal_()
    return MultiHeadAttention.from_torch(theirs).eval(), theirs.eval()


@pytest.mark.parametrize("h", [1, 2, 4, 8])
def test_submodules_and_parameter_count(h):
    m = MultiHeadAttention(32, h)
    assert m.head_dim == 32 // h
    assert [name for name, _ in m.named_children()] == ["q_proj", "k_proj", "v_proj", "out_proj"]
    assert all(isinstance(getattr(m, n), nn.Linear) for n in ("q_proj", "out_proj"))
    assert sum(p.numel() for p in m.parameters()) == 4 * 32 * 32 + 4 * 32


def test_parameter_count_without_bias():
    assert sum(p.numel() for p in MultiHeadAttention(32, 4, bias=False).parameters()) == 4 * 32 * 32


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("return_weights", [False, True])
def test_self_attention_equals_torch(bias, return_weights):
    ours, theirs = pair(bias=bias)
    x = torch.randn(3, 7, 16)
    expected, expected_weights = theirs(x, x, x, average_attn_weights=False)
    got = ours(x, return_weights=return_weights)
    if return_weights:
        got, weights = got
        torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(got, expected)


def test_cross_attention_equals_torch():
    ours, theirs = pair()
    x, context = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    expected, _ = theirs(x, context, context)
    torch.testing.assert_close(ours(x, context=context), expected)
    out, weights = ours(x, context=context, return_weights=True)
    assert weights.shape == (2, 4, 5, 9)
    torch.testing.assert_close(out, expected)


def test_padding_mask_equals_torch_key_padding_mask():
    ours, theirs = pair()
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 1]])
    x = torch.randn(2, 5, 16)
    mask = padding_mask(ids, pad_id=0)  # True = real token
    expected, _ = theirs(x, x, x, key_padding_mask=~mask[:, 0, 0])  # torch: True = pad
    torch.testing.assert_close(ours(x, mask=mask), expected)
    torch.testing.assert_close(ours(x, mask=mask, return_weights=True)[0], expected)


def test_causal_mask_equals_torch_attn_mask():
    ours, theirs = pair()
    x = torch.randn(2, 6, 16)
    expected, _ = theirs(x, x, x, attn_mask=~causal_mask(6))  # torch: True = blocked
    torch.testing.assert_close(ours(x, mask=causal_mask(6)), expected)


@pytest.mark.parametrize("path", ["fast", "teaching"])
def test_fully_masked_rows_are_zero_before_out_proj_and_never_nan(path):
    ours, _ = pair(bias=False)
    x = torch.randn(2, 4, 16, requires_grad=True)
    mask = torch.ones(2, 4, 4, 4, dtype=torch.bool)
    mask[0, :, 1] = False  # query 1 of sequence 0 sees nothing, in every head
    out = ours(x, mask=mask, return_weights=path == "teaching")
    out = out[0] if path == "teaching" else out
    assert (out[0, 1] == 0).all()  # no bias: zero heads -> zero output
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters())


def grads(module, x, context, mask, return_weights):
    module.zero_grad()
    x = x.detach().clone().requires_grad_(True)
    out = module(x, mask, context=context, return_weights=return_weights)
    out = out[0] if return_weights else out
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    return out, x.grad, [p.grad.clone() for p in module.parameters()]


@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 3),
    L_q=st.integers(1, 6),
    L_k=st.integers(1, 6),
    head_dim=st.integers(1, 4),
    h=st.integers(1, 4),
    cross=st.booleans(),
    mask_kind=st.sampled_from(["none", "full", "key", "heads"]),
    p_keep=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
)
def test_property_fast_and_teaching_paths_agree_and_equal_torch(
    B, L_q, L_k, head_dim, h, cross, mask_kind, p_keep, seed
):
    d_model = head_dim * h
    ours, theirs = pair(d_model, h, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, L_q, d_model, generator=g)
    L_k = L_k if cross else L_q
    context = torch.randn(B, L_k, d_model, generator=g) if cross else None
    shape = {"none": None, "full": (B, h, L_q, L_k), "key": (B, 1, 1, L_k), "heads": (L_q, L_k)}
    mask = None if shape[mask_kind] is None else torch.rand(shape[mask_kind], generator=g) < p_keep

    fast = grads(ours, x, context, mask, return_weights=False)
    teaching = grads(ours, x, context, mask, return_weights=True)
    for a, b in zip(
        [fast[0], fast[1], *fast[2]], [teaching[0], teaching[1], *teaching[2]], strict=True
    ):
        assert torch.isfinite(a).all() and torch.isfinite(b).all()
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    src = x if context is None else context
    torch_mask = None
    if mask is not None:  # torch wants (B*h, L_q, L_k) or (L_q, L_k), True = blocked
        full = mask.expand(B, h, L_q, L_k).reshape(B * h, L_q, L_k)
        torch_mask = ~full
    # need_weights=False: torch's SDPA path, which also gives 0 for fully masked rows
    # (with need_weights=True torch's module gives NaN there; ours never does)
    expected, _ = theirs(x, src, src, attn_mask=torch_mask, need_weights=False)
    torch.testing.assert_close(fast[0], expected, atol=1e-5, rtol=1e-4)


def test_to_torch_round_trip():
    ours, _ = pair()
    theirs = ours.to_torch()
    assert theirs.batch_first
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(ours(x), theirs(x, x, x)[0])
    back = MultiHeadAttention.from_torch(theirs)
    for a, b in zip(ours.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_from_torch_keeps_dropout_and_mode():
    theirs = nn.MultiheadAttention(8, 2, dropout=0.25, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    assert ours.dropout == 0.25 and ours.training
    assert not MultiHeadAttention.from_torch(theirs.eval()).training


def test_dropout_only_in_training():
    torch.manual_seed(0)
    m = MultiHeadAttention(16, 4, dropout=0.5)
    x = torch.randn(2, 8, 16)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))


def test_heads_split_is_per_head_slice():
    """Head i uses rows i*head_dim:(i+1)*head_dim of q_proj: changing another head's rows leaves it alone."""
    m = MultiHeadAttention(16, 4).eval()
    x = torch.randn(1, 5, 16)
    _, before = m(x, return_weights=True)
    with torch.no_grad():
        m.q_proj.weight[4:8] += 1.0  # head 1's query rows
    _, after = m(x, return_weights=True)
    torch.testing.assert_close(after[:, [0, 2, 3]], before[:, [0, 2, 3]])
    assert not torch.allclose(after[:, 1], before[:, 1])


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ((10, 4), {}, "d_model=10 is not divisible by n_heads=4 (d_model / n_heads = 2.5)"),
        ((8, 0), {}, "n_heads must be a positive integer, got n_heads=0"),
        ((0, 2), {}, "d_model must be a positive integer, got d_model=0"),
        ((8, 2), {"dropout": 1.5}, "dropout must be in [0, 1), got 1.5"),
    ],
    ids=["not-divisible", "n_heads=0", "d_model=0", "dropout"],
)
def test_error_bad_sizes(args, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiHeadAttention(*args, **options)


@pytest.mark.parametrize(
    ("x", "context", "message"),
    [
        ((2, 5, 12), None, "x must be (B, L, d_model=16), got shape (2, 5, 12)"),
        ((2, 5, 16), (2, 5, 8), "context must be (B, L, d_model=16), got shape (2, 5, 8)"),
        ((5, 16), None, "x must be (B, L, d_model=16), got shape (5, 16)"),
    ],
    ids=["x", "context", "unbatched"],
)
def test_error_wrong_shape(x, context, message):
    m = MultiHeadAttention(16, 4)
    context = None if context is None else torch.randn(context)
    with pytest.raises(ValueError, match=re.escape(message)):
        m(torch.randn(x), context=context)


def test_error_batch_sizes_differ():
    m = MultiHeadAttention(16, 4)
    with pytest.raises(
        ValueError, match=re.escape("x is (2, 5, 16) (B=2), context is (3, 5, 16) (B=3)")
    ):
        m(torch.randn(2, 5, 16), context=torch.randn(3, 5, 16))


def test_error_mask_not_broadcastable():
    m = MultiHeadAttention(16, 4)
    message = "mask of shape (5, 4) does not broadcast to the scores' shape (2, 4, 5, 6)"
    with pytest.raises(ValueError, match=re.escape(message)):
        m(torch.randn(2, 5, 16), torch.ones(5, 4, dtype=torch.bool), context=torch.randn(2, 6, 16))
    with pytest.raises(TypeError, match=re.escape("mask must be boolean")):
        m(torch.randn(2, 5, 16), mask=torch.ones(5, 5))


def test_error_rope_wrong_type_or_width():
    from transformer_lib import RotaryEmbedding

    with pytest.raises(
        TypeError, match=re.escape("rope must be a RotaryEmbedding or None, got Identity")
    ):
        MultiHeadAttention(16, 4, rope=nn.Identity())
    with pytest.raises(
        ValueError, match=re.escape("rope.head_dim=8 must equal d_model / n_heads = 4")
    ):
        MultiHeadAttention(16, 4, rope=RotaryEmbedding(8))


# ---------------------------------------------------------------- the (x, mask) signature


@pytest.mark.parametrize("return_weights", [False, True])
def test_mask_is_the_second_positional_argument(return_weights):
    ours, _ = pair()
    x = torch.randn(2, 5, 16)
    mask = causal_mask(5)
    positional = ours(x, mask, return_weights=return_weights)
    keyword = ours(x, mask=mask, return_weights=return_weights)
    for a, b in (
        zip(positional, keyword, strict=True) if return_weights else [(positional, keyword)]
    ):
        assert torch.equal(a, b)
    assert not torch.allclose(ours(x, mask), ours(x))  # the mask is used, not dropped


def test_context_is_keyword_only():
    ours, _ = pair()
    x = torch.randn(2, 5, 16)
    with pytest.raises(TypeError):
        ours(x, None, x)


# ---------------------------------------------------------------- masks of any rank, on both paths


@pytest.mark.parametrize("path", ["fast", "teaching"])
@pytest.mark.parametrize(
    "mask",
    [
        torch.tensor([True, False, True, True, False, True]),  # (L_k,)
        torch.tensor(True),  # 0-d: every key
        torch.tensor([True]),  # (1,)
    ],
    ids=["rank-1", "0-d", "rank-1-size-1"],
)
def test_low_rank_masks_broadcast_on_both_paths(path, mask):
    """A rank-1 or 0-d mask broadcasts like any tensor; the fast path raised IndexError."""
    ours, _ = pair()
    x, context = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    full = mask.expand(2, 4, 4, 6)
    expected = ours(x, full, context=context)
    got = ours(x, mask, context=context, return_weights=path == "teaching")
    got = got[0] if path == "teaching" else got
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("path", ["fast", "teaching"])
def test_mask_on_another_device_is_refused(path):
    """A meta mask with CPU inputs gave different garbage on each call of the fast path."""
    ours, _ = pair()
    x = torch.randn(2, 5, 16)
    mask = torch.ones(5, 5, dtype=torch.bool, device="meta")
    message = "mask is on device meta but the inputs are on cpu"
    with pytest.raises(ValueError, match=re.escape(message)):
        ours(x, mask, return_weights=path == "teaching")
