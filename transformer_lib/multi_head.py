"""Chapter 2: multi-head attention, h attentions side by side in d_model/h-dimensional subspaces."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from transformer_lib.attention import check_mask, scaled_dot_product_attention
from transformer_lib.efficient import flash_attention
from transformer_lib.positional import RotaryEmbedding

__all__ = ["MultiHeadAttention", "head_dim_for"]


def head_dim_for(
    d_model: int, n_heads: int, *, names: tuple[str, str] = ("d_model", "n_heads")
) -> int:
    """The width of one head, ``d_model / n_heads``: the library's one divisibility check.

    Args:
        d_model: width of the token vectors.
        n_heads: number of heads; must divide ``d_model``.
        names: what the caller calls the two sizes, for the error message
            (a BERT config says ``("hidden_size", "num_attention_heads")``).

    Raises:
        ValueError: a size is not a positive integer, or ``n_heads`` does not divide ``d_model``.
    """
    d_name, h_name = names
    for name, value in ((d_name, d_model), (h_name, n_heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    if d_model % n_heads != 0:
        raise ValueError(
            f"{d_name}={d_model} is not divisible by {h_name}={n_heads} "
            f"({d_name} / {h_name} = {d_model / n_heads:g})"
        )
    return d_model // n_heads


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    Each of the ``n_heads`` heads attends in its own ``d_model / n_heads``-dimensional
    slice of the projected queries, keys and values; the heads run in parallel and
    their outputs are concatenated and mixed by ``out_proj``.

    Args:
        d_model: width of the token vectors.
        n_heads: number of heads h; must divide ``d_model``.
        dropout: dropout on the attention weights (training only).
        bias: whether the four projections have biases.
        rope: a :class:`~transformer_lib.positional.RotaryEmbedding` of width
            ``d_model / n_heads``, applied to each head's queries and keys after the
            projection and before the scores (values are not rotated); None for none.
        attention: the kernel of the fast path (``return_weights=False``): ``"sdpa"``
            (default) calls ``torch.nn.functional.scaled_dot_product_attention``;
            ``"flash"`` calls Chapter 9's pure-PyTorch
            :func:`~transformer_lib.efficient.flash_attention` (O(L) memory; equal up to
            float rounding).

    Attributes:
        q_proj, k_proj, v_proj, out_proj: the four ``nn.Linear(d_model, d_model)`` maps.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        head_dim = head_dim_for(d_model, n_heads)
        if attention not in ("sdpa", "flash"):
            raise ValueError(f"attention must be one of 'sdpa', 'flash', got {attention!r}")
        self.attention = attention
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        if rope is not None:
            if not isinstance(rope, RotaryEmbedding):
                raise TypeError(
                    f"rope must be a RotaryEmbedding or None, got {type(rope).__name__}"
                )
            if rope.head_dim != self.head_dim:
                raise ValueError(
                    f"rope.head_dim={rope.head_dim} must equal d_model / n_heads = {self.head_dim}"
                )
        self.rope = rope

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        context: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``x`` to itself (self-attention) or to ``context`` (cross-attention).

        Args:
            x: queries' source, (B, L_q, d_model).
            mask: bool, broadcastable to (B, h, L_q, L_k); True = may attend; on the
                device of ``x``. Accepted shapes include (L_k,), (L_q, L_k), (B, 1, 1, L_k)
                and (B, h, L_q, L_k). A key-padding mask from ``(B, L_k)`` token ids must be built with
                :func:`~transformer_lib.attention.padding_mask` (shape (B, 1, 1, L_k)):
                a bare (B, L_k) mask would be read as (L_q, L_k).
            context: keys' and values' source, (B, L_k, d_model); None means ``x``
                (self-attention). Keyword-only.
            return_weights: also return the attention weights. This takes the
                teaching path through :func:`~transformer_lib.attention.scaled_dot_product_attention`;
                otherwise the fast path through
                ``torch.nn.functional.scaled_dot_product_attention`` (or the ``attention``
                kernel chosen at construction) is used. They agree up to float rounding.

        Returns:
            The output, (B, L_q, d_model); with ``return_weights=True`` the pair
            ``(output, weights)`` with weights (B, h, L_q, L_k).
        """
        context = x if context is None else context
        mask = self._check_inputs(x, context, mask)
        heads, weights = self._attend(x, context, mask, return_weights)  # (B, h, L_q, head_dim)
        output = self.out_proj(rearrange(heads, "b h q_len head_dim -> b q_len (h head_dim)"))
        return (output, weights) if return_weights else output

    def keys_values(
        self, context: torch.Tensor, *, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values ``context`` offers, split into heads: what a KV cache stores.

        Args:
            context: (B, L_k, d_model).
            offset: position of the first token of ``context``, for rotary keys.

        Returns:
            ``(keys, values)``, each (B, h, L_k, head_dim); with ``rope`` the keys are
            rotated at positions offset..offset+L_k-1 (values never are).
        """
        if context.dim() != 3 or context.shape[-1] != self.d_model:
            raise ValueError(
                f"context must be (B, L, d_model={self.d_model}), got shape {tuple(context.shape)}"
            )
        keys = self._split_heads(self.k_proj(context))  # (B, h, L_k, head_dim)
        values = self._split_heads(self.v_proj(context))  # (B, h, L_k, head_dim)
        if self.rope is not None:
            keys = self.rope(keys, offset)
        return keys, values

    def attend(
        self,
        x: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        offset: int = 0,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from the queries of ``x`` to given keys and values (cached ones, say).

        ``self(x, mask, context=c)`` equals ``self.attend(x, *self.keys_values(c), mask)``
        (same kernel, same numbers).

        Args:
            x: queries' source, (B, L_q, d_model).
            keys, values: (B, h, L_k, head_dim), as :meth:`keys_values` returns them.
            mask: bool, broadcastable to (B, h, L_q, L_k); True = may attend.
            offset: position of the first token of ``x``, for rotary queries.
            return_weights: also return the attention weights (B, h, L_q, L_k).

        Returns:
            (B, L_q, d_model), or ``(output, weights)`` with ``return_weights=True``.
        """
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, L, d_model={self.d_model}), got {tuple(x.shape)}")
        B = x.shape[0]
        L_k = keys.shape[-2] if keys.dim() == 4 else -1
        expected = (B, self.n_heads, L_k if L_k >= 0 else "L_k", self.head_dim)
        for name, t in (("keys", keys), ("values", values)):
            if tuple(t.shape) != expected:
                raise ValueError(
                    f"{name} must be (B, h, L_k, head_dim) = {expected} for x of batch size "
                    f"B={B}, got shape {tuple(t.shape)}"
                )
        if mask is not None:
            scores_shape = (B, self.n_heads, x.shape[1], keys.shape[-2])
            mask = check_mask(mask, scores_shape, device=x.device)
        q = self._split_heads(self.q_proj(x))  # (B, h, L_q, head_dim)
        if self.rope is not None:
            q = self.rope(q, offset)
        heads, weights = self._kernel(q, keys, values, mask, return_weights)
        output = self.out_proj(rearrange(heads, "b h q_len head_dim -> b q_len (h head_dim)"))
        return (output, weights) if return_weights else output

    def _attend(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor | None,
        return_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Project, split into heads and attend; returns every head's output (and weights)."""
        q = self._split_heads(self.q_proj(x))  # (B, h, L_q, head_dim)
        k = self._split_heads(self.k_proj(context))  # (B, h, L_k, head_dim)
        v = self._split_heads(self.v_proj(context))  # (B, h, L_k, head_dim)
        if self.rope is not None:  # positions enter the scores only: q and k, never v
            q, k = self.rope(q), self.rope(k)
        return self._kernel(q, k, v, mask, return_weights)

    def _kernel(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        return_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every head at once: (B, h, L_q, head_dim) outputs, and the weights if asked for."""
        dropout_p = self.dropout if self.training else 0.0
        if return_weights:
            return scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p)
        if self.attention == "flash":
            return flash_attention(q, k, v, mask, dropout_p=dropout_p), None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, h, L, head_dim): head i takes features i*head_dim..(i+1)*head_dim-1."""
        return rearrange(t, "b l (h head_dim) -> b h l head_dim", h=self.n_heads)

    def _check_inputs(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Raise a clear error on bad shapes; return the mask as both attention paths take it."""
        for name, t in (("x", x), ("context", context)):
            if t.dim() != 3 or t.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must be (B, L, d_model={self.d_model}), got shape {tuple(t.shape)}"
                )
        if x.shape[0] != context.shape[0]:
            raise ValueError(
                f"x and context must have the same batch size: x is {tuple(x.shape)} "
                f"(B={x.shape[0]}), context is {tuple(context.shape)} (B={context.shape[0]})"
            )
        if mask is None:
            return None
        scores_shape = (x.shape[0], self.n_heads, x.shape[1], context.shape[1])
        return check_mask(mask, scores_shape, device=x.device)

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build a ``MultiHeadAttention`` with the weights of a ``torch.nn.MultiheadAttention``.

        PyTorch packs the three input projections into one ``in_proj_weight`` of shape
        (3 d_model, d_model), rows in the order query, key, value; they are split here.
        Remember that PyTorch's boolean masks use the opposite polarity (True = blocked):
        ``module(x, x, x, attn_mask=~mask)`` equals ``ours(x, mask=mask)``.

        Args:
            module: a ``torch.nn.MultiheadAttention`` with ``batch_first=True``,
                kdim = vdim = embed_dim, no ``bias_k``/``bias_v`` and ``add_zero_attn=False``.

        Returns:
            A new module with copies of the weights, on the source's device, in its dtype
            and training mode (see :func:`transformer_lib.interop.multi_head_from_torch`).

        Raises:
            ValueError: the module cannot be represented (``batch_first=False``, kdim/vdim,
                extra key/value biases).
        """
        from transformer_lib.interop import multi_head_from_torch

        return multi_head_from_torch(module)

    def to_torch(self) -> nn.MultiheadAttention:
        """Return a ``torch.nn.MultiheadAttention(batch_first=True)`` with copies of these weights.

        Its boolean masks mean True = blocked: pass ``attn_mask=~mask``. The copy is on this
        module's device and in its dtype.

        Raises:
            ValueError: the module has a rotary embedding, which torch's has not.
        """
        from transformer_lib.interop import multi_head_to_torch

        return multi_head_to_torch(self)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, head_dim={self.head_dim}, dropout={self.dropout}"
