"""Chapter 9: attention in O(L) memory, built from the online softmax.

Chapter 1's :func:`~transformer_lib.attention.scaled_dot_product_attention` builds the
whole (L_q, L_k) matrix of weights. The three functions here give the same output
without ever holding it:

* :func:`online_softmax`: softmax in one streaming pass over blocks, with a running max
  and a running sum (Milakov & Gimelshein, 2018);
* :func:`chunked_attention`: queries a chunk at a time, each chunk recomputed in the
  backward pass (Rabe & Staats, 2021);
* :func:`flash_attention`: FlashAttention-2-style tiling (Dao et al., 2022; Dao, 2023);
  the forward pass keeps only the output and one log-sum-exp per query, and the backward
  pass recomputes each tile's probabilities from it.

Shapes and masks follow the rest of the book: q (..., L_q, head_dim), k (..., L_k,
head_dim), v (..., L_k, d_v) with leading axes that broadcast; a boolean mask,
broadcastable to (..., L_q, L_k), means True = may attend; a query that may attend to no
key gets an all-zero output and all-zero gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from transformer_lib.attention import _check_qkv, check_mask, scaled_dot_product_attention

__all__ = [
    "TileCounts",
    "chunked_attention",
    "flash_attention",
    "online_softmax",
    "online_softmax_update",
    "tile_counts",
]


# --- 9.1 The online softmax ----------------------------------------------------------------


def online_softmax_update(
    running_max: torch.Tensor, running_sum: torch.Tensor, block: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block of scores into the running max ``m`` and running sum ``s``.

    With ``m' = max(m, max(block))``: ``s' = s·exp(m − m') + Σ exp(block − m')``, so that
    after the last block ``s = Σ_j exp(x_j − m)`` over everything seen, with ``m`` the
    maximum of everything seen.

    Args:
        running_max: (...), the maximum so far; ``-inf`` before the first block.
        running_sum: (...), the sum so far; 0 before the first block.
        block: (..., n), the next n entries.

    Returns:
        The pair ``(running_max, running_sum)`` after the block.
    """
    new_max = torch.maximum(running_max, block.amax(dim=-1))
    # A row that has seen only -inf so far keeps max -inf; shift it by 0 instead (no NaN).
    shift = _finite_or_zero(new_max)
    new_sum = running_sum * torch.exp(running_max - shift) + torch.exp(
        block - shift.unsqueeze(-1)
    ).sum(dim=-1)
    return new_max, new_sum


def online_softmax(x: torch.Tensor, dim: int = -1, *, block_size: int) -> torch.Tensor:
    """Softmax along ``dim``, its max and sum computed in one streaming pass over blocks.

    The safe softmax reads ``x`` three times (max, sum of exponentials, normalise); the
    online version reads it twice: one pass over blocks of ``block_size`` entries updates
    a running max and a running sum (:func:`online_softmax_update`), and a second writes
    ``exp(x − max) / sum`` (Milakov & Gimelshein, 2018).

    Args:
        x: any floating-point tensor.
        dim: the axis to normalise.
        block_size: entries per block, ≥ 1; the last block may be shorter.

    Returns:
        A tensor like ``x``, equal to ``torch.softmax(x, dim)`` (a row of all ``-inf``
        gives NaN, as there).
    """
    _check_block_size("block_size", block_size)
    if not x.is_floating_point():
        raise TypeError(f"online_softmax: x must be floating point, got dtype {x.dtype}")
    rows = x.movedim(dim, -1)  # (..., n)
    running_max = rows.new_full(rows.shape[:-1], -math.inf)
    running_sum = rows.new_zeros(rows.shape[:-1])
    for start in range(0, rows.shape[-1], block_size):
        block = rows[..., start : start + block_size]
        running_max, running_sum = online_softmax_update(running_max, running_sum, block)
    out = torch.exp(rows - running_max.unsqueeze(-1)) / running_sum.unsqueeze(-1)
    return out.movedim(-1, dim)


# --- 9.2 Chunked attention (Rabe & Staats) ---------------------------------------------------


def chunked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    chunk_size: int,
) -> torch.Tensor:
    """Exact attention, ``chunk_size`` queries at a time: O(chunk_size · L_k) extra memory.

    Each chunk of queries attends to all keys with Chapter 1's
    :func:`~transformer_lib.attention.scaled_dot_product_attention`; the chunk is
    checkpointed, so the backward pass recomputes its weights instead of keeping them
    (Rabe & Staats, 2021).

    Args:
        q: (..., L_q, head_dim). k: (..., L_k, head_dim). v: (..., L_k, d_v).
        mask: bool, broadcastable to (..., L_q, L_k); True = may attend.
        chunk_size: queries per chunk, ≥ 1.

    Returns:
        The output, (..., L_q, d_v).
    """
    _check_block_size("chunk_size", chunk_size)
    scores_shape = _check_inputs(q, k, v, mask)
    mask = None if mask is None else _at_least_2d(mask)

    def attend(q_chunk: torch.Tensor, mask_chunk: torch.Tensor | None) -> torch.Tensor:
        return scaled_dot_product_attention(q_chunk, k, v, mask_chunk)[0]

    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    chunks = []
    for start in range(0, scores_shape[-2], chunk_size):
        q_chunk = q[..., start : start + chunk_size, :]
        mask_chunk = None if mask is None else _query_rows(mask, start, start + chunk_size)
        if needs_grad:
            chunks.append(checkpoint(attend, q_chunk, mask_chunk, use_reentrant=False))
        else:
            chunks.append(attend(q_chunk, mask_chunk))
    return torch.cat(chunks, dim=-2)


# --- 9.3 FlashAttention-style tiling ---------------------------------------------------------


@dataclass(frozen=True)
class TileCounts:
    """How many (query block, key block) tiles a tiled attention computes and skips."""

    computed: int  # tiles whose scores are computed
    skipped: int  # tiles entirely above the causal diagonal, never touched

    @property
    def total(self) -> int:
        """All tiles of the (L_q, L_k) grid."""
        return self.computed + self.skipped


def tile_counts(
    l_q: int, l_k: int, *, block_q: int, block_k: int, causal: bool = False
) -> TileCounts:
    """The tiles :func:`flash_attention` computes and skips for these sizes.

    It walks the same loop as the kernel (the same ``_key_blocks``), so the count is the
    kernel's, not a formula's.
    """
    _check_block_size("block_q", block_q)
    _check_block_size("block_k", block_k)
    computed = sum(
        len(list(_key_blocks(start, min(start + block_q, l_q), l_k, block_k, causal)))
        for start in range(0, l_q, block_q)
    )
    total = math.ceil(l_q / block_q) * math.ceil(l_k / block_k)
    return TileCounts(computed=computed, skipped=total - computed)


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    causal: bool = False,
    block_q: int = 256,
    block_k: int = 256,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Exact attention by tiles, never holding more than one (block_q, block_k) tile of scores.

    Forward: for each block of ``block_q`` queries, stream the key/value blocks and keep a
    running max, a running denominator and an unnormalised output; save only the output
    and each query's log-sum-exp of scores. Backward: a :class:`torch.autograd.Function`
    that recomputes each tile's probabilities from the saved log-sum-exp
    (Dao et al., 2022; Dao, 2023).

    Args:
        q: (..., L_q, head_dim). k: (..., L_k, head_dim). v: (..., L_k, d_v).
        mask: bool, broadcastable to (..., L_q, L_k); True = may attend.
        causal: query i may attend to keys j ≤ i only (top-left aligned, as
            ``F.scaled_dot_product_attention(is_causal=True)``); key blocks entirely above
            the diagonal are skipped (:func:`tile_counts`). Combines with ``mask``.
        block_q, block_k: queries and keys per tile, ≥ 1; need not divide the lengths.
        dropout_p: probability of zeroing an attention weight (training only). Each tile's
            dropout pattern is drawn from a seed saved by the forward pass and drawn again
            in the backward pass.

    Returns:
        The output, (..., L_q, d_v); all zeros for a query that may attend to no key.
    """
    _check_block_size("block_q", block_q)
    _check_block_size("block_k", block_k)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    scores_shape = _check_inputs(q, k, v, mask)
    if mask is not None:
        mask = _at_least_2d(mask).expand(scores_shape)  # a view: no copy
    seed = int(torch.randint(0, 2**62, ())) if dropout_p > 0.0 else 0
    return _FlashAttention.apply(q, k, v, mask, _Tiling(causal, block_q, block_k, dropout_p, seed))


@dataclass(frozen=True)
class _Tiling:
    causal: bool
    block_q: int
    block_k: int
    dropout_p: float
    seed: int  # of the dropout patterns; tile (i, j) uses a generator seeded from it


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, tiling: _Tiling):
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        l_q, l_k = q.shape[-2], k.shape[-2]
        scale = 1.0 / math.sqrt(q.shape[-1])
        out = q.new_empty(*batch, l_q, v.shape[-1])
        lse = q.new_empty(*batch, l_q)  # log Σ_j exp(s_ij) per query; +inf if none allowed
        for q_start in range(0, l_q, tiling.block_q):
            q_stop = min(q_start + tiling.block_q, l_q)
            q_tile = q[..., q_start:q_stop, :] * scale
            running_max = q.new_full((*batch, q_stop - q_start), -math.inf)
            running_sum = q.new_zeros((*batch, q_stop - q_start))
            acc = q.new_zeros((*batch, q_stop - q_start, v.shape[-1]))  # Σ_j exp(s_ij − m_i) v_j
            for k_start, k_stop in _key_blocks(q_start, q_stop, l_k, tiling.block_k, tiling.causal):
                scores = _tile_scores(q_tile, k, mask, tiling, q_start, q_stop, k_start, k_stop)
                new_max = torch.maximum(running_max, scores.amax(dim=-1))
                shift = _finite_or_zero(new_max)
                p = torch.exp(scores - shift.unsqueeze(-1))  # (..., bq, bk), unnormalised
                rescale = torch.exp(running_max - shift)  # exp(m_old − m_new) ≤ 1
                running_sum = running_sum * rescale + p.sum(dim=-1)
                if tiling.dropout_p > 0.0:
                    p = p * _keep(tiling, p, q_start, k_start)
                acc = acc * rescale.unsqueeze(-1) + p @ v[..., k_start:k_stop, :]
                running_max = new_max
            seen_a_key = running_sum > 0
            out[..., q_start:q_stop, :] = acc / torch.where(seen_a_key, running_sum, 1.0).unsqueeze(
                -1
            )
            lse[..., q_start:q_stop] = torch.where(
                seen_a_key, _finite_or_zero(running_max) + torch.log(running_sum), math.inf
            )
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.tiling = tiling
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse, mask = ctx.saved_tensors
        tiling: _Tiling = ctx.tiling
        l_q, l_k = q.shape[-2], k.shape[-2]
        scale = 1.0 / math.sqrt(q.shape[-1])
        # D_i = Σ_j P_ij dP_ij = dO_i · O_i: the softmax backward's row term, without P.
        row_dot = (grad_out * out).sum(dim=-1)  # (..., L_q)
        batch = out.shape[:-2]  # q, k, v broadcast to these leading axes
        grad_q = q.new_zeros((*batch, l_q, q.shape[-1]))
        grad_k = q.new_zeros((*batch, l_k, k.shape[-1]))
        grad_v = q.new_zeros((*batch, l_k, v.shape[-1]))
        q_blocks = [
            (start, min(start + tiling.block_q, l_q)) for start in range(0, l_q, tiling.block_q)
        ]
        for q_start, q_stop in q_blocks:
            q_tile = q[..., q_start:q_stop, :] * scale
            d_out = grad_out[..., q_start:q_stop, :]
            for k_start, k_stop in _key_blocks(q_start, q_stop, l_k, tiling.block_k, tiling.causal):
                scores = _tile_scores(q_tile, k, mask, tiling, q_start, q_stop, k_start, k_stop)
                p = torch.exp(scores - lse[..., q_start:q_stop].unsqueeze(-1))  # recomputed P
                d_p = d_out @ v[..., k_start:k_stop, :].transpose(-2, -1)
                if tiling.dropout_p > 0.0:
                    keep = _keep(tiling, p, q_start, k_start)
                    grad_v[..., k_start:k_stop, :] += (p * keep).transpose(-2, -1) @ d_out
                    d_p = d_p * keep
                else:
                    grad_v[..., k_start:k_stop, :] += p.transpose(-2, -1) @ d_out
                # softmax backward: dS = P ∘ (dP − D), with D the row term above
                d_s = p * (d_p - row_dot[..., q_start:q_stop].unsqueeze(-1))
                grad_q[..., q_start:q_stop, :] += d_s @ k[..., k_start:k_stop, :] * scale
                grad_k[..., k_start:k_stop, :] += d_s.transpose(-2, -1) @ q_tile
        return (
            grad_q.sum_to_size(q.shape),
            grad_k.sum_to_size(k.shape),
            grad_v.sum_to_size(v.shape),
            None,
            None,
        )


def _key_blocks(
    q_start: int, q_stop: int, l_k: int, block_k: int, causal: bool
) -> Iterator[tuple[int, int]]:
    """(start, stop) of the key blocks that queries q_start..q_stop−1 need to see.

    With ``causal`` the last query of the block is q_stop − 1, so key blocks starting at
    q_stop or later lie entirely above the diagonal and are skipped.
    """
    end = min(l_k, q_stop) if causal else l_k
    for start in range(0, end, block_k):
        yield start, min(start + block_k, l_k)


def _tile_scores(q_tile, k, mask, tiling, q_start, q_stop, k_start, k_stop) -> torch.Tensor:
    """Scaled scores of one tile, (..., q_stop − q_start, k_stop − k_start); −inf where masked."""
    scores = q_tile @ k[..., k_start:k_stop, :].transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask[..., q_start:q_stop, k_start:k_stop], -math.inf)
    if tiling.causal and k_stop - 1 > q_start:  # the tile crosses the diagonal
        rows = torch.arange(q_start, q_stop, device=scores.device).unsqueeze(-1)
        cols = torch.arange(k_start, k_stop, device=scores.device)
        scores = scores.masked_fill(cols > rows, -math.inf)
    return scores


def _keep(tiling: _Tiling, p: torch.Tensor, q_start: int, k_start: int) -> torch.Tensor:
    """Tile (q_start, k_start)'s dropout multipliers: 0 or 1/(1 − p), the same in both passes."""
    generator = torch.Generator(device=p.device)
    generator.manual_seed((tiling.seed + 1_000_003 * q_start + k_start) % 2**63)
    kept = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return (kept >= tiling.dropout_p).to(p.dtype) / (1.0 - tiling.dropout_p)


def _finite_or_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(t), t, 0.0)


def _check_block_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")


def _check_inputs(q, k, v, mask) -> torch.Size:
    """Check q, k, v (and the mask) as Chapter 1 does; return the scores' shape (..., L_q, L_k)."""
    _check_qkv(q, k, v)
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    scores_shape = torch.Size((*batch, q.shape[-2], k.shape[-2]))
    if mask is not None:
        check_mask(mask, scores_shape)
    return scores_shape


def _at_least_2d(mask: torch.Tensor) -> torch.Tensor:
    while mask.dim() < 2:
        mask = mask.unsqueeze(0)
    return mask


def _query_rows(mask: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows start..stop−1 of a mask; a mask broadcast over queries (size 1) stays as it is."""
    return mask if mask.shape[-2] == 1 else mask[..., start:stop, :]
