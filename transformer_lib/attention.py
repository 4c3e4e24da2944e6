"""Chapter 1: scaled dot-product attention and the two masks it is used with.

Conventions of the whole book:

* tensors are batch-first; the last two axes of q, k and v are (length, features);
* a boolean mask means **True = may attend** (as in
  :func:`torch.nn.functional.scaled_dot_product_attention` and Hugging Face's
  ``attention_mask``). :class:`torch.nn.MultiheadAttention` uses the opposite
  polarity; convert with ``~mask``;
* a mask broadcasts against the scores (..., L_q, L_k) from the right, like any
  tensor: a 2-D mask is (L_q, L_k), a 1-D mask is (L_k,). A Hugging Face-style
  ``(B, L)`` padding mask is therefore **not** a valid mask as it stands: when B = L it
  would silently be read as (L_q, L_k). Build key-padding masks with
  :func:`padding_mask`, which gives (B, 1, 1, L).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import einsum, rearrange

__all__ = ["causal_mask", "check_mask", "padding_mask", "scaled_dot_product_attention"]


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention: ``softmax(q kᵀ / √d_k) v``, returning the output and the weights.

    Args:
        q: queries, (..., L_q, d_k).
        k: keys, (..., L_k, d_k).
        v: values, (..., L_k, d_v).
        mask: bool, broadcastable to (..., L_q, L_k); True = may attend; on the
            device of q. Accepted shapes include (L_k,), (L_q, L_k), (B, 1, L_k) and,
            with heads, (B, 1, 1, L_k) from :func:`padding_mask` and (B, h, L_q, L_k).
            A (B, L_k) padding mask would be read as (L_q, L_k): use :func:`padding_mask`.
            A query whose keys are all masked gets all-zero weights and an
            all-zero output (never NaN, forward or backward).
        dropout_p: probability of zeroing an attention weight (training only;
            pass 0.0 in evaluation).

    Returns:
        The pair ``(output, weights)``. ``output`` is (..., L_q, d_v), the weighted
        average of the values. ``weights`` is (..., L_q, L_k); each row sums to 1,
        or is all zeros when the whole row is masked. These are the weights
        *before* dropout.

    Raises:
        ValueError: q/k feature sizes differ, k/v lengths differ, the leading
            (batch) axes do not broadcast, or the mask does not broadcast or is on
            another device.
        TypeError: the mask is not boolean, or q, k, v are not floating point.
    """
    _check_qkv(q, k, v)
    d_k = q.shape[-1]
    scores = einsum(q, k, "... q_len d_k, ... k_len d_k -> ... q_len k_len") / math.sqrt(d_k)
    if mask is None:
        weights = scores.softmax(dim=-1)
    else:
        mask = check_mask(mask, scores.shape, device=scores.device)
        # A finite "minus infinity": a fully masked row becomes a uniform softmax
        # (not 0/0 = NaN), which the final multiplication by the mask zeroes.
        very_negative = torch.finfo(scores.dtype).min
        weights = scores.masked_fill(~mask, very_negative).softmax(dim=-1) * mask
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0.0 else weights
    output = einsum(dropped, v, "... q_len k_len, ... k_len d_v -> ... q_len d_v")
    return output, weights


def causal_mask(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Mask that lets query i see keys 0..i only.

    Args:
        n: sequence length.
        device: where to create the mask.

    Returns:
        bool (n, n), True where key index ≤ query index.
    """
    if n < 0:
        raise ValueError(f"causal_mask: n must be ≥ 0, got {n}")
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mask that hides padding tokens from every query.

    Args:
        ids: token ids, (B, L).
        pad_id: the id used for padding.

    Returns:
        bool (B, 1, 1, L), True at real tokens; it broadcasts over heads (h)
        and queries (L_q) to (B, h, L_q, L).
    """
    if ids.dim() != 2:
        raise ValueError(f"padding_mask: ids must be (B, L), got shape {tuple(ids.shape)}")
    return rearrange(ids != pad_id, "b k_len -> b 1 1 k_len")


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() < 2:
            raise ValueError(
                f"{name} must have shape (..., length, features), got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {t.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            "q and k must have the same feature size d_k: "
            f"q is {tuple(q.shape)} (d_k={q.shape[-1]}), k is {tuple(k.shape)} (d_k={k.shape[-1]})"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            "k and v must have the same length L_k: "
            f"k is {tuple(k.shape)} (L_k={k.shape[-2]}), v is {tuple(v.shape)} (L_k={v.shape[-2]})"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            "the leading (batch) axes of q, k and v must broadcast: "
            f"q is {tuple(q.shape)}, k is {tuple(k.shape)}, v is {tuple(v.shape)}"
        ) from None


def check_mask(
    mask: torch.Tensor,
    scores_shape: torch.Size | tuple[int, ...],
    *,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Raise a clear error unless ``mask`` is a boolean mask for scores of ``scores_shape``.

    A mask broadcasts from the right: (L_k,) is one row for every query, (L_q, L_k) one
    pattern for every batch and head, (B, 1, 1, L_k) (from :func:`padding_mask`) one
    key-padding row per sequence. A Hugging Face-style (B, L_k) mask would be read as
    (L_q, L_k), so build key-padding masks with :func:`padding_mask`.

    Args:
        mask: the mask to check; True = may attend.
        scores_shape: the shape of the attention scores, (..., L_q, L_k).
        device: the inputs' device; the mask must be on it. None skips this check.

    Returns:
        The mask with at least two axes (a 0-d or (L_k,) mask expanded, as a view, to
        (L_q, L_k)), as :func:`torch.nn.functional.scaled_dot_product_attention` needs.

    Raises:
        TypeError: the mask is not boolean.
        ValueError: the mask does not broadcast to ``scores_shape``, or is on another device.
    """
    scores_shape = torch.Size(scores_shape)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be boolean (True = may attend), got dtype {mask.dtype}; "
            "for a 0/1 mask use mask.bool()"
        )
    if device is not None and mask.device != torch.device(device):
        raise ValueError(
            f"mask is on device {mask.device} but the inputs are on {device}; "
            "move it with mask.to(device)"
        )
    expected = tuple(scores_shape)
    try:
        broadcast = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != scores_shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"{expected} (..., L_q, L_k)"
        )
    if mask.dim() < 2:
        return mask.expand(scores_shape[-2:])
    return mask
