"""Chapter 8: the decoder. Causal self-attention, cross-attention to the encoder, a KV cache.

A decoder layer has three sublayers, each with a residual connection and a LayerNorm:
causal self-attention over the target tokens so far, cross-attention from the target
to the encoder's output (the *memory*), and the feed-forward network.

Generation produces one token per step. A :class:`KVCache` keeps what earlier steps
computed and later steps would compute again: every layer's self-attention keys and
values of the positions already decoded (one position is appended per step), and its
cross-attention keys and values of the memory (computed at the first step, then reused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from transformer_lib.encoder import FeedForward, stack_layers
from transformer_lib.multi_head import MultiHeadAttention
from transformer_lib.positional import RotaryEmbedding

__all__ = ["DecoderLayer", "DecoderWeights", "KVCache", "LayerKVCache", "TransformerDecoder"]


class DecoderWeights(NamedTuple):
    """One decoder layer's attention weights."""

    self_attn: torch.Tensor  # (B, h, L, L_past + L): causal self-attention
    cross_attn: torch.Tensor  # (B, h, L, L_s): target positions over memory positions


@dataclass
class LayerKVCache:
    """The cache of one decoder layer (h heads of width head_dim, batch of B sequences).

    Attributes:
        self_keys, self_values: (B, h, L_t, head_dim), the self-attention keys and values
            of the L_t target positions decoded so far; one position is appended per step.
            Keys are stored already rotated when the layer uses RoPE.
        cross_keys, cross_values: (B, h, L_s, head_dim), the cross-attention keys and
            values of the encoder memory (padded to L_s; a memory mask hides the padding),
            computed at the first step and reused at every later one.
    """

    self_keys: torch.Tensor | None = None
    self_values: torch.Tensor | None = None
    cross_keys: torch.Tensor | None = None
    cross_values: torch.Tensor | None = None

    @property
    def length(self) -> int:
        """L_t, the number of target positions cached (the next position's index)."""
        return 0 if self.self_keys is None else self.self_keys.shape[-2]

    @property
    def batch_size(self) -> int | None:
        """B, or None while the cache is empty."""
        for t in (self.self_keys, self.cross_keys):
            if t is not None:
                return t.shape[0]
        return None

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append new positions' keys and values (B, h, L_new, head_dim); return all of them."""
        if self.self_keys is None:
            self.self_keys, self.self_values = keys, values
        else:
            self.self_keys = torch.cat([self.self_keys, keys], dim=-2)
            self.self_values = torch.cat([self.self_values, values], dim=-2)
        return self.self_keys, self.self_values


class KVCache:
    """The key/value cache of a :class:`TransformerDecoder`: one :class:`LayerKVCache` per layer.

    After L target positions, for a batch of B sequences whose memory has L_s positions,
    it holds 2 · n_layers tensors (B, h, L, head_dim) for self-attention, that is
    ``2 · n_layers · B · L · d_model`` numbers (h · head_dim = d_model), growing by one
    position per step, and 2 · n_layers tensors (B, h, L_s, head_dim) for
    cross-attention, ``2 · n_layers · B · L_s · d_model`` numbers, fixed.

    Args:
        n_layers: the number of decoder layers it serves.

    Attributes:
        layers: list of :class:`LayerKVCache`, one per decoder layer.
    """

    def __init__(self, n_layers: int) -> None:
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        self.layers = [LayerKVCache() for _ in range(n_layers)]

    @property
    def length(self) -> int:
        """The number of target positions cached."""
        return self.layers[0].length

    @property
    def batch_size(self) -> int | None:
        """B, or None while the cache is empty."""
        return self.layers[0].batch_size

    def numel(self, kind: str = "self") -> int:
        """Numbers stored for ``"self"``-attention or ``"cross"``-attention, over all layers."""
        if kind not in ("self", "cross"):
            raise ValueError(f"kind must be 'self' or 'cross', got {kind!r}")
        return sum(
            t.numel()
            for layer in self.layers
            for t in (
                (layer.self_keys, layer.self_values)
                if kind == "self"
                else (layer.cross_keys, layer.cross_values)
            )
            if t is not None
        )

    def __repr__(self) -> str:
        return (
            f"KVCache(n_layers={len(self.layers)}, batch_size={self.batch_size}, "
            f"length={self.length})"
        )


def causal_self_mask(length: int, offset: int = 0, device=None) -> torch.Tensor | None:
    """Causal mask of ``length`` new positions after ``offset`` cached ones.

    Returns:
        bool (length, offset + length), True where key j ≤ offset + query i; None for a
        single new position, which may see every key.
    """
    if length == 1:
        return None
    return torch.ones(length, offset + length, dtype=torch.bool, device=device).tril(offset)


class DecoderLayer(nn.Module):
    """One decoder layer: causal self-attention, cross-attention, feed-forward.

    Each sublayer has a residual connection and a LayerNorm, after the sum (post-LN,
    ``norm_first=False``, the paper) or on the sublayer's input (pre-LN). Dropout as in
    :class:`~transformer_lib.encoder.EncoderLayer` and PyTorch's
    ``nn.TransformerDecoderLayer``.

    Args:
        d_model: width of the token vectors (target and memory).
        n_heads: number of heads of both attentions.
        d_ff: hidden width of the feed-forward network.
        dropout: dropout probability (training only).
        activation: ``"relu"`` or ``"gelu"``.
        norm_first: pre-LN when True, post-LN when False.
        layer_norm_eps: the epsilon of the three LayerNorms.
        bias: whether the linear maps and LayerNorms have biases.
        rope: a rotary embedding for the *self*-attention, or None. Cross-attention never
            rotates: target and source positions are not on one axis.

    Attributes:
        self_attn: :class:`~transformer_lib.multi_head.MultiHeadAttention` over the target.
        cross_attn: :class:`~transformer_lib.multi_head.MultiHeadAttention`, queries from
            the target, keys and values from the memory.
        ff: :class:`~transformer_lib.encoder.FeedForward`.
        norm1, norm2, norm3: ``nn.LayerNorm(d_model)`` of the three sublayers, in order.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        layer_norm_eps: float = 1e-5,
        bias: bool = True,
        rope: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, rope=rope)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias)
        self.ff = FeedForward(d_model, d_ff, activation=activation, dropout=dropout, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: LayerKVCache | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, DecoderWeights]:
        """Run the layer on L target positions (all of them, or the new ones with a cache).

        Args:
            x: (B, L, d_model), the target positions.
            memory: (B, L_s, d_model), the encoder's output.
            self_mask: bool, broadcastable to (B, h, L, L_past + L), True = may attend;
                L_past is the number of cached positions (0 without a cache). None means
                causal: each position sees itself and the positions before it. To add a
                padding mask, pass ``causal_mask(L) & padding_mask(tgt, pad_id)``.
            memory_mask: bool, broadcastable to (B, h, L, L_s), True = may attend; usually
                ``padding_mask(src, pad_id)`` (B, 1, 1, L_s). None: every memory position.
            cache: this layer's :class:`LayerKVCache`; ``x`` holds the positions after the
                cached ones, whose keys and values are appended to it.
            return_weights: also return the :class:`DecoderWeights`.

        Returns:
            (B, L, d_model), or ``(output, DecoderWeights)`` with ``return_weights=True``.
        """
        self._check_inputs(x, memory, cache)
        offset = 0 if cache is None else cache.length
        if self_mask is None:
            self_mask = causal_self_mask(x.shape[1], offset, x.device)
        if self.norm_first:
            attended, self_weights = self._self_attention_block(
                self.norm1(x), self_mask, cache, return_weights
            )
            x = x + attended
            attended, cross_weights = self._cross_attention_block(
                self.norm2(x), memory, memory_mask, cache, return_weights
            )
            x = x + attended
            x = x + self._feed_forward_block(self.norm3(x))
        else:
            attended, self_weights = self._self_attention_block(x, self_mask, cache, return_weights)
            x = self.norm1(x + attended)
            attended, cross_weights = self._cross_attention_block(
                x, memory, memory_mask, cache, return_weights
            )
            x = self.norm2(x + attended)
            x = self.norm3(x + self._feed_forward_block(x))
        return (x, DecoderWeights(self_weights, cross_weights)) if return_weights else x

    def _self_attention_block(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerKVCache | None,
        return_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Causal self-attention and its dropout; with a cache, over cached + new positions."""
        if cache is None:
            out = self.self_attn(x, mask, return_weights=return_weights)
        else:
            offset = cache.length  # position of x's first token
            keys, values = cache.append(*self.self_attn.keys_values(x, offset=offset))
            out = self.self_attn.attend(
                x, keys, values, mask, offset=offset, return_weights=return_weights
            )
        out, weights = out if return_weights else (out, None)
        return self.dropout1(out), weights

    def _cross_attention_block(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor | None,
        cache: LayerKVCache | None,
        return_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cross-attention (queries from x, keys and values from memory) and its dropout."""
        if cache is None:
            out = self.cross_attn(x, mask, context=memory, return_weights=return_weights)
        else:
            if cache.cross_keys is None:  # first step: the memory's keys and values, once
                cache.cross_keys, cache.cross_values = self.cross_attn.keys_values(memory)
            out = self.cross_attn.attend(
                x, cache.cross_keys, cache.cross_values, mask, return_weights=return_weights
            )
        out, weights = out if return_weights else (out, None)
        return self.dropout2(out), weights

    def _feed_forward_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.ff(x))

    def _check_inputs(
        self, x: torch.Tensor, memory: torch.Tensor, cache: LayerKVCache | None
    ) -> None:
        for name, t in (("x", x), ("memory", memory)):
            if t.dim() != 3 or t.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name} must be (B, L, d_model={self.d_model}), got shape {tuple(t.shape)}"
                )
        B = x.shape[0]
        if memory.shape[0] != B:
            raise ValueError(
                f"x and memory must have the same batch size: x is {tuple(x.shape)}, "
                f"memory is {tuple(memory.shape)}"
            )
        if cache is None:
            return
        if cache.batch_size not in (None, B):
            raise ValueError(
                f"the cache holds a batch of B={cache.batch_size} sequences, x has B={B}: "
                "use a new KVCache for each batch"
            )
        if cache.cross_keys is not None and cache.cross_keys.shape[-2] != memory.shape[1]:
            raise ValueError(
                f"the cache was filled from a memory of length L_s={cache.cross_keys.shape[-2]}, "
                f"got memory {tuple(memory.shape)}: use a new KVCache for each batch"
            )

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """Copy a ``torch.nn.TransformerDecoderLayer`` (batch_first, relu or gelu, either
        ``norm_first``): ``self_attn`` → ``self_attn``, ``multihead_attn`` → ``cross_attn``,
        ``linear1``/``linear2`` → ``ff.linear1``/``ff.linear2``, ``norm1..3`` → ``norm1..3``.
        """
        from transformer_lib.interop import decoder_layer_from_torch

        return decoder_layer_from_torch(layer)

    def to_torch(self) -> nn.TransformerDecoderLayer:
        """Return a ``torch.nn.TransformerDecoderLayer(batch_first=True)`` with these weights.

        Its masks mean True = blocked: ``tgt_mask=~self_mask``,
        ``memory_key_padding_mask=~keep``.
        """
        from transformer_lib.interop import decoder_layer_to_torch

        return decoder_layer_to_torch(self)


class TransformerDecoder(nn.Module):
    """A stack of ``n_layers`` :class:`DecoderLayer`, plus a final LayerNorm when pre-LN.

    Every layer attends to the same memory (the encoder's last output).

    Args:
        n_layers: number of layers N.
        d_model, n_heads, d_ff: sizes, as in :class:`DecoderLayer`.
        **layer_options: ``dropout``, ``activation``, ``norm_first``, ``layer_norm_eps``,
            ``bias``, ``rope``, passed to every layer.

    Attributes:
        layers: ``nn.ModuleList`` of :class:`DecoderLayer`.
        norm: the final ``nn.LayerNorm`` when ``norm_first=True``, else None.
    """

    def __init__(
        self, n_layers: int, d_model: int, n_heads: int, d_ff: int, **layer_options
    ) -> None:
        super().__init__()
        self.layers, self.norm = stack_layers(
            lambda: DecoderLayer(d_model, n_heads, d_ff, **layer_options), n_layers
        )
        self.norm_first = self.layers[0].norm_first

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        *,
        self_mask: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[DecoderWeights]]:
        """Run every layer in order; the arguments are those of :meth:`DecoderLayer.forward`,
        except ``cache``, a :class:`KVCache` with one entry per layer.

        Returns:
            (B, L, d_model), or ``(output, weights)`` with a :class:`DecoderWeights` per layer.
        """
        if cache is not None and len(cache.layers) != len(self.layers):
            raise ValueError(
                f"the cache has {len(cache.layers)} layers, the decoder {len(self.layers)}"
            )
        if self_mask is None:  # causal, built once for every layer
            offset = 0 if cache is None else cache.length
            self_mask = causal_self_mask(x.shape[1], offset, x.device)
        all_weights = []
        for i, layer in enumerate(self.layers):
            out = layer(
                x,
                memory,
                self_mask=self_mask,
                memory_mask=memory_mask,
                cache=None if cache is None else cache.layers[i],
                return_weights=return_weights,
            )
            if return_weights:
                x, weights = out
                all_weights.append(weights)
            else:
                x = out
        if self.norm is not None:
            x = self.norm(x)
        return (x, all_weights) if return_weights else x

    @classmethod
    def from_torch(cls, decoder: nn.TransformerDecoder) -> TransformerDecoder:
        """Copy a ``torch.nn.TransformerDecoder`` of ``TransformerDecoderLayer`` modules.

        A pre-LN decoder must have a final ``norm`` and a post-LN one must not, as ours.
        """
        from transformer_lib.interop import decoder_from_torch

        return decoder_from_torch(decoder)

    def to_torch(self) -> nn.TransformerDecoder:
        """Return a ``torch.nn.TransformerDecoder`` (batch_first layers) with these weights."""
        from transformer_lib.interop import decoder_to_torch

        return decoder_to_torch(self)
