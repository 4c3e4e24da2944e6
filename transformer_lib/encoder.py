"""Chapter 4: the encoder. Feed-forward, encoder layer (post-LN and pre-LN), and the stack."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from transformer_lib.multi_head import MultiHeadAttention
from transformer_lib.positional import RotaryEmbedding

__all__ = ["ACTIVATIONS", "EncoderLayer", "FeedForward", "TransformerEncoder"]

#: The activations the feed-forward network accepts, ReLU and exact (erf) GELU, by name.
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Position-wise feed-forward network: ``linear2(dropout(activation(linear1(x))))``.

    Applied to every token separately; the same weights at every position.

    Args:
        d_model: width of the token vectors.
        d_ff: hidden width (often 4 d_model).
        activation: ``"relu"`` or ``"gelu"`` (exact, erf-based, as BERT).
        dropout: dropout after the activation (training only).

    Attributes:
        linear1: ``nn.Linear(d_model, d_ff)``.
        linear2: ``nn.Linear(d_ff, d_model)``.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}"
            )
        if d_model <= 0 or d_ff <= 0:
            raise ValueError(
                f"d_model and d_ff must be positive, got d_model={d_model}, d_ff={d_ff}"
            )
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> (..., d_model)."""
        return self.linear2(self.dropout(ACTIVATIONS[self.activation](self.linear1(x))))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


class EncoderLayer(nn.Module):
    """One encoder layer: self-attention and feed-forward, each with a residual and a LayerNorm.

    Post-LN (``norm_first=False``, the original paper and BERT) normalises after each
    residual sum; pre-LN (``norm_first=True``) normalises each sublayer's input and leaves
    the residual path untouched. Dropout is where the paper and PyTorch put it: on the
    attention weights, after the activation, and on each sublayer's output before the sum.

    Args:
        d_model: width of the token vectors.
        n_heads: number of attention heads.
        d_ff: hidden width of the feed-forward network.
        dropout: dropout probability (training only).
        activation: ``"relu"`` or ``"gelu"``.
        norm_first: pre-LN when True, post-LN when False.
        layer_norm_eps: the epsilon of both LayerNorms (each keeps its own ``eps``
            attribute afterwards; converters copy them one by one).
        bias: whether the linear maps and LayerNorms have biases.
        rope: a rotary embedding passed to the attention (Chapter 3), or None.

    Attributes:
        self_attn: :class:`~transformer_lib.multi_head.MultiHeadAttention`.
        ff: :class:`FeedForward`.
        norm1, norm2: ``nn.LayerNorm(d_model)`` around the attention and the feed-forward.
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
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout, bias=bias, rope=rope)
        self.ff = FeedForward(d_model, d_ff, activation=activation, dropout=dropout, bias=bias)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run the layer.

        Args:
            x: (B, L, d_model).
            mask: bool, broadcastable to (B, h, L, L); True = may attend; shapes as in
                :meth:`MultiHeadAttention.forward <transformer_lib.multi_head.MultiHeadAttention.forward>`.
                Build a key-padding mask with :func:`~transformer_lib.attention.padding_mask`
                ((B, 1, 1, L)); a (B, L) mask would be read as (L_q, L_k).
            return_weights: also return the attention weights (B, h, L, L).

        Returns:
            (B, L, d_model), or ``(output, weights)`` with ``return_weights=True``.
        """
        if self.norm_first:
            attended, weights = self._attention_block(self.norm1(x), mask, return_weights)
            x = x + attended
            x = x + self._feed_forward_block(self.norm2(x))
        else:
            attended, weights = self._attention_block(x, mask, return_weights)
            x = self.norm1(x + attended)
            x = self.norm2(x + self._feed_forward_block(x))
        return (x, weights) if return_weights else x

    def _attention_block(
        self, x: torch.Tensor, mask: torch.Tensor | None, return_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Self-attention and its dropout; returns the attention weights too when asked."""
        if not return_weights:
            return self.dropout1(self.self_attn(x, mask)), None
        attended, weights = self.self_attn(x, mask, return_weights=True)
        return self.dropout1(attended), weights

    def _feed_forward_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.ff(x))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy a ``torch.nn.TransformerEncoderLayer`` (batch-first, relu or exact gelu).

        Its ``self_attn`` is copied as by :meth:`~transformer_lib.multi_head.MultiHeadAttention.from_torch`,
        ``linear1``/``linear2`` become ``ff.linear1``/``ff.linear2``; each LayerNorm keeps its
        ``eps`` and each dropout its ``p``. The copy is on the source's device, in its dtype
        (see :func:`transformer_lib.interop.encoder_layer_from_torch`).

        Raises:
            ValueError: the layer cannot be represented (``batch_first=False``, tanh-GELU or
                another activation, a norm that is not an affine ``nn.LayerNorm``).
        """
        from transformer_lib.interop import encoder_layer_from_torch

        return encoder_layer_from_torch(layer)

    def to_torch(self) -> nn.TransformerEncoderLayer:
        """Return a ``torch.nn.TransformerEncoderLayer(batch_first=True)`` with these weights.

        Its masks use the opposite polarity: ``src_mask=~mask``, ``src_key_padding_mask=~keep``.

        Raises:
            ValueError: the layer has a rotary embedding, which torch's has not.
        """
        from transformer_lib.interop import encoder_layer_to_torch

        return encoder_layer_to_torch(self)


def stack_layers(
    make_layer: Callable[[], nn.Module], n_layers: int
) -> tuple[nn.ModuleList, nn.LayerNorm | None]:
    """``n_layers`` fresh layers, and the final LayerNorm that a pre-LN stack ends with.

    Shared by :class:`TransformerEncoder` and the decoder's stack.

    Args:
        make_layer: builds one layer with ``norm_first`` and ``norm1`` (an ``nn.LayerNorm``).
        n_layers: number of layers N, at least 1.

    Returns:
        ``(layers, norm)``: an ``nn.ModuleList`` of N layers, and for pre-LN layers an
        ``nn.LayerNorm`` with the first layer's width, ``eps`` and bias (else None).
    """
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    layers = nn.ModuleList(make_layer() for _ in range(n_layers))
    first = layers[0].norm1
    norm = (
        nn.LayerNorm(first.normalized_shape, eps=first.eps, bias=first.bias is not None)
        if layers[0].norm_first
        else None
    )
    return layers, norm


class TransformerEncoder(nn.Module):
    """A stack of ``n_layers`` :class:`EncoderLayer`, plus a final LayerNorm when pre-LN.

    A pre-LN stack's residual stream is never normalised inside the layers, so it ends
    with one more ``nn.LayerNorm``; a post-LN stack already ends normalised and has none.

    Args:
        n_layers: number of layers N.
        d_model, n_heads, d_ff: sizes, as in :class:`EncoderLayer`.
        **layer_options: ``dropout``, ``activation``, ``norm_first``, ``layer_norm_eps``,
            ``bias``, ``rope``, passed to every layer.

    Attributes:
        layers: ``nn.ModuleList`` of :class:`EncoderLayer`.
        norm: the final ``nn.LayerNorm`` when ``norm_first=True``, else None.
    """

    def __init__(
        self, n_layers: int, d_model: int, n_heads: int, d_ff: int, **layer_options
    ) -> None:
        super().__init__()
        self.layers, self.norm = stack_layers(
            lambda: EncoderLayer(d_model, n_heads, d_ff, **layer_options), n_layers
        )
        self.norm_first = self.layers[0].norm_first

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Run every layer in order.

        Args:
            x: (B, L, d_model).
            mask: bool, broadcastable to (B, h, L, L); True = may attend. Build a
                key-padding mask with :func:`~transformer_lib.attention.padding_mask`
                ((B, 1, 1, L)); a (B, L) mask would be read as (L_q, L_k).
            return_weights: also return each layer's attention weights.

        Returns:
            (B, L, d_model), or ``(output, weights)`` where ``weights`` is a list of
            ``n_layers`` tensors (B, h, L, L).
        """
        all_weights = []
        for layer in self.layers:
            if return_weights:
                x, weights = layer(x, mask, return_weights=True)
                all_weights.append(weights)
            else:
                x = layer(x, mask)
        if self.norm is not None:
            x = self.norm(x)
        return (x, all_weights) if return_weights else x

    @classmethod
    def from_torch(cls, encoder: nn.TransformerEncoder) -> TransformerEncoder:
        """Copy a ``torch.nn.TransformerEncoder`` built from ``TransformerEncoderLayer`` modules.

        A pre-LN encoder must have a final ``norm`` (its ``eps`` is copied), and a post-LN
        one must not, as ours. See :func:`transformer_lib.interop.encoder_from_torch`.

        Raises:
            ValueError: the encoder cannot be represented.
        """
        from transformer_lib.interop import encoder_from_torch

        return encoder_from_torch(encoder)

    def to_torch(self) -> nn.TransformerEncoder:
        """Return a ``torch.nn.TransformerEncoder`` (batch-first layers) with these weights."""
        from transformer_lib.interop import encoder_to_torch

        return encoder_to_torch(self)
