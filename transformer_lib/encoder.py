"""Chapter 4: the encoder. Feed-forward, encoder layer (post-LN and pre-LN), and the stack."""

from __future__ import annotations

import copy

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
        layer_norm_eps: the epsilon of both LayerNorms.
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
            mask: bool, broadcastable to (B, h, L, L); True = may attend.
            return_weights: also return the attention weights (B, h, L, L).

        Returns:
            (B, L, d_model), or ``(output, weights)`` with ``return_weights=True``.
        """
        weights: list[torch.Tensor] = []
        record = weights if return_weights else None
        if self.norm_first:
            x = x + self._attention_block(self.norm1(x), mask, record)
            x = x + self._feed_forward_block(self.norm2(x))
        else:
            x = self.norm1(x + self._attention_block(x, mask, record))
            x = self.norm2(x + self._feed_forward_block(x))
        return (x, weights[0]) if return_weights else x

    def _attention_block(
        self, x: torch.Tensor, mask: torch.Tensor | None, record: list[torch.Tensor] | None
    ) -> torch.Tensor:
        """Self-attention and its dropout; appends the attention weights to ``record`` if given."""
        if record is None:
            return self.dropout1(self.self_attn(x, mask=mask))
        attended, weights = self.self_attn(x, mask=mask, return_weights=True)
        record.append(weights)
        return self.dropout1(attended)

    def _feed_forward_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.ff(x))

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy a ``torch.nn.TransformerEncoderLayer`` (relu or gelu, either ``norm_first``).

        Its ``self_attn`` is copied with :meth:`~transformer_lib.multi_head.MultiHeadAttention.from_torch`,
        ``linear1``/``linear2`` become ``ff.linear1``/``ff.linear2``.
        """
        activation = _torch_activation_name(layer)
        bias = layer.linear1.bias is not None
        ours = cls(
            layer.self_attn.embed_dim,
            layer.self_attn.num_heads,
            layer.linear1.out_features,
            dropout=layer.dropout.p,
            activation=activation,
            norm_first=layer.norm_first,
            layer_norm_eps=layer.norm1.eps,
            bias=bias,
        )
        ours.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        for ours_sub, theirs_sub in ours._torch_counterparts(layer):
            ours_sub.load_state_dict(theirs_sub.state_dict())
        return ours.to(layer.linear1.weight.dtype).train(layer.training)

    def to_torch(self) -> nn.TransformerEncoderLayer:
        """Return a ``torch.nn.TransformerEncoderLayer(batch_first=True)`` with these weights.

        Its masks use the opposite polarity: ``src_mask=~mask``, ``src_key_padding_mask=~keep``.
        """
        attn = self.self_attn
        layer = nn.TransformerEncoderLayer(
            attn.d_model,
            attn.n_heads,
            self.ff.linear1.out_features,
            dropout=self.dropout1.p,
            activation=self.ff.activation,
            layer_norm_eps=self.norm1.eps,
            batch_first=True,
            norm_first=self.norm_first,
            bias=self.ff.linear1.bias is not None,
        )
        layer.self_attn = attn.to_torch()
        for ours_sub, theirs_sub in self._torch_counterparts(layer):
            theirs_sub.load_state_dict(ours_sub.state_dict())
        return layer.to(self.ff.linear1.weight.dtype).train(self.training)

    def _torch_counterparts(
        self, layer: nn.TransformerEncoderLayer
    ) -> tuple[tuple[nn.Module, nn.Module], ...]:
        """Our submodules paired with a torch layer's, besides the attention."""
        return (
            (self.ff.linear1, layer.linear1),
            (self.ff.linear2, layer.linear2),
            (self.norm1, layer.norm1),
            (self.norm2, layer.norm2),
        )


def _torch_activation_name(layer: nn.TransformerEncoderLayer) -> str:
    activation = layer.activation
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or (
        isinstance(activation, nn.GELU) and activation.approximate == "none"
    ):
        return "gelu"
    raise ValueError(
        f"from_torch: unsupported activation {activation!r}; expected relu or exact (erf) gelu"
    )


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
        if n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {n_layers}")
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, **layer_options) for _ in range(n_layers)
        )
        first = self.layers[0]
        self.norm_first = first.norm_first
        self.norm = (
            nn.LayerNorm(d_model, eps=first.norm1.eps, bias=first.norm1.bias is not None)
            if self.norm_first
            else None
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, *, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Run every layer in order.

        Args:
            x: (B, L, d_model).
            mask: bool, broadcastable to (B, h, L, L); True = may attend.
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

        A pre-LN encoder must have a final ``norm``, and a post-LN one must not, as ours.
        """
        layers = [EncoderLayer.from_torch(layer) for layer in encoder.layers]
        norm_first = layers[0].norm_first
        if norm_first and encoder.norm is None:
            raise ValueError("from_torch: a pre-LN (norm_first=True) encoder needs a final norm")
        if not norm_first and encoder.norm is not None:
            raise ValueError("from_torch: a post-LN (norm_first=False) encoder has no final norm")
        first = layers[0]
        ours = cls(
            len(layers),
            first.self_attn.d_model,
            first.self_attn.n_heads,
            first.ff.linear1.out_features,
            norm_first=norm_first,
            layer_norm_eps=first.norm1.eps,
            bias=first.ff.linear1.bias is not None,
        )
        ours.layers = nn.ModuleList(layers)
        if norm_first:
            ours.norm.load_state_dict(encoder.norm.state_dict())
        return ours.to(first.ff.linear1.weight.dtype).train(encoder.training)

    def to_torch(self) -> nn.TransformerEncoder:
        """Return a ``torch.nn.TransformerEncoder`` (batch_first layers) with these weights."""
        encoder = nn.TransformerEncoder(
            self.layers[0].to_torch(),
            num_layers=len(self.layers),
            norm=copy.deepcopy(self.norm),
            enable_nested_tensor=False,
        )
        encoder.layers = nn.ModuleList(layer.to_torch() for layer in self.layers)
        return encoder.train(self.training)
