"""Chapter 2: multi-head attention, h attentions side by side in d_model/h-dimensional subspaces."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from transformer_lib.attention import check_mask, scaled_dot_product_attention
from transformer_lib.positional import RotaryEmbedding

__all__ = ["MultiHeadAttention"]


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
    ) -> None:
        super().__init__()
        if d_model <= 0 or n_heads <= 0:
            raise ValueError(
                f"d_model and n_heads must be positive, got d_model={d_model}, n_heads={n_heads}"
            )
        if d_model % n_heads != 0:
            raise ValueError(
                f"d_model={d_model} is not divisible by n_heads={n_heads} "
                f"(d_model / n_heads = {d_model / n_heads:g})"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
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
            mask: bool, broadcastable to (B, h, L_q, L_k); True = may attend.
                A key-padding mask from ``(B, L_k)`` token ids must be built with
                :func:`~transformer_lib.attention.padding_mask` (shape (B, 1, 1, L_k)):
                a bare (B, L_k) mask would be read as (L_q, L_k).
            context: keys' and values' source, (B, L_k, d_model); None means ``x``
                (self-attention). Keyword-only.
            return_weights: also return the attention weights. This takes the
                teaching path through :func:`~transformer_lib.attention.scaled_dot_product_attention`;
                otherwise the fast path through
                ``torch.nn.functional.scaled_dot_product_attention`` is used. Both give the
                same numbers.

        Returns:
            The output, (B, L_q, d_model); with ``return_weights=True`` the pair
            ``(output, weights)`` with weights (B, h, L_q, L_k).
        """
        context = x if context is None else context
        self._check_inputs(x, context, mask)
        heads, weights = self._attend(x, context, mask, return_weights)  # (B, h, L_q, head_dim)
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
        dropout_p = self.dropout if self.training else 0.0
        if return_weights:
            return scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout_p)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, h, L, head_dim): head i takes features i*head_dim..(i+1)*head_dim-1."""
        return rearrange(t, "b l (h head_dim) -> b h l head_dim", h=self.n_heads)

    def _check_inputs(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None
    ) -> None:
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
        if mask is not None:
            check_mask(mask, (x.shape[0], self.n_heads, x.shape[1], context.shape[1]))

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build a ``MultiHeadAttention`` with the weights of a ``torch.nn.MultiheadAttention``.

        PyTorch packs the three input projections into one ``in_proj_weight`` of shape
        (3 d_model, d_model), rows in the order query, key, value; they are split here.
        Remember that PyTorch's boolean masks use the opposite polarity (True = blocked):
        ``module(x, x, x, attn_mask=~mask)`` equals ``ours(x, mask=mask)``.

        Args:
            module: a ``torch.nn.MultiheadAttention`` with kdim = vdim = embed_dim, no
                ``bias_k``/``bias_v`` and ``add_zero_attn=False``.

        Returns:
            A new module with copies of the weights, in the same training mode.
        """
        if not module._qkv_same_embed_dim:
            raise ValueError(
                "from_torch: kdim and vdim must equal embed_dim, got "
                f"embed_dim={module.embed_dim}, kdim={module.kdim}, vdim={module.vdim}"
            )
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("from_torch: add_bias_kv and add_zero_attn are not supported")
        has_bias = module.in_proj_bias is not None
        ours = cls(module.embed_dim, module.num_heads, dropout=module.dropout, bias=has_bias)
        ours = ours.to(device=module.in_proj_weight.device, dtype=module.in_proj_weight.dtype)
        with torch.no_grad():
            for proj, weight in zip(
                (ours.q_proj, ours.k_proj, ours.v_proj), module.in_proj_weight.chunk(3), strict=True
            ):
                proj.weight.copy_(weight)
            ours.out_proj.weight.copy_(module.out_proj.weight)
            if has_bias:
                for proj, bias in zip(
                    (ours.q_proj, ours.k_proj, ours.v_proj),
                    module.in_proj_bias.chunk(3),
                    strict=True,
                ):
                    proj.bias.copy_(bias)
                ours.out_proj.bias.copy_(module.out_proj.bias)
        return ours.train(module.training)

    def to_torch(self) -> nn.MultiheadAttention:
        """Return a ``torch.nn.MultiheadAttention(batch_first=True)`` with copies of these weights.

        Its boolean masks mean True = blocked: pass ``attn_mask=~mask``.
        """
        if self.rope is not None:
            raise ValueError("to_torch: torch.nn.MultiheadAttention has no rotary embeddings")
        has_bias = self.q_proj.bias is not None
        weight = self.q_proj.weight
        module = nn.MultiheadAttention(
            self.d_model,
            self.n_heads,
            dropout=self.dropout,
            bias=has_bias,
            batch_first=True,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            module.in_proj_weight.copy_(
                torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            )
            module.out_proj.weight.copy_(self.out_proj.weight)
            if has_bias:
                module.in_proj_bias.copy_(
                    torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
                )
                module.out_proj.bias.copy_(self.out_proj.bias)
        return module.train(self.training)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, head_dim={self.head_dim}, dropout={self.dropout}"
