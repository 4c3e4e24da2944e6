"""From token ids to hidden states: embeddings, positions and the encoder, with task heads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from transformer_lib.attention import padding_mask
from transformer_lib.encoder import ACTIVATIONS, TransformerEncoder
from transformer_lib.multi_head import head_dim_for
from transformer_lib.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

__all__ = [
    "POSITIONAL_ENCODINGS",
    "EncoderConfig",
    "SequenceClassifier",
    "TokenEmbedding",
    "TokenTagger",
    "TransformerEncoderModel",
    "mean_pool",
]

#: The choices of ``EncoderConfig.positional``.
POSITIONAL_ENCODINGS = ("none", "learned", "sinusoidal", "rotary")


@dataclass
class EncoderConfig:
    """Everything that defines a :class:`TransformerEncoderModel`."""

    vocab_size: int  # number of token ids
    d_model: int = 64  # width of every token vector
    n_heads: int = 4  # attention heads per layer; must divide d_model
    d_ff: int = 256  # hidden width of the feed-forward networks
    n_layers: int = 2  # encoder layers N
    max_len: int = 512  # longest sequence the learned / sinusoidal tables cover
    positional: str = "sinusoidal"  # "none", "learned", "sinusoidal" or "rotary"
    dropout: float = 0.1  # dropout everywhere (training only)
    activation: str = "relu"  # feed-forward activation: "relu" or "gelu"
    norm_first: bool = False  # pre-LN (True) or post-LN (False)
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm
    pad_id: int | None = 0  # id that is masked out as a key; None when there is no padding
    scale_embedding: bool = True  # multiply token vectors by sqrt(d_model), as the paper does
    rope_base: float = 10000.0  # base of the rotary frequencies (positional="rotary")

    def __post_init__(self) -> None:
        """Check every field; a bad one raises a ``ValueError`` that names it and its value."""
        if self.positional not in POSITIONAL_ENCODINGS:
            raise ValueError(
                f"unknown positional {self.positional!r}; expected one of {POSITIONAL_ENCODINGS}"
            )
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "n_layers", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
        head_dim = head_dim_for(self.d_model, self.n_heads)
        if self.positional == "rotary" and head_dim % 2 != 0:
            raise ValueError(
                f"positional='rotary' needs an even head_dim = d_model / n_heads, got {head_dim}"
            )
        if self.positional == "sinusoidal" and self.d_model % 2 != 0:
            raise ValueError(
                f"positional='sinusoidal' needs an even d_model, got d_model={self.d_model}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got dropout={self.dropout!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation={self.activation!r}; expected one of {sorted(ACTIVATIONS)}"
            )
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps!r}")
        if not self.rope_base > 0:
            raise ValueError(f"rope_base must be positive, got {self.rope_base!r}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(
                f"pad_id={self.pad_id} is not a token id of vocab_size={self.vocab_size}"
            )


class TokenEmbedding(nn.Module):
    """The lookup table from token ids to vectors, optionally scaled by √d_model.

    Its weights start with standard deviation 1/√d_model. The paper multiplies the
    looked-up vectors by √d_model, which brings each coordinate to unit scale: the same
    scale as the sinusoidal table, so that neither drowns the other when they are added.

    Args:
        vocab_size: number of token ids.
        d_model: width of the vectors.
        scale: multiply by √d_model.

    Attributes:
        embedding: ``nn.Embedding(vocab_size, d_model)``.
    """

    def __init__(self, vocab_size: int, d_model: int, *, scale: bool = True) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        self.scale = math.sqrt(d_model) if scale else 1.0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) -> (B, L, d_model)."""
        return self.embedding(ids) * self.scale


class TransformerEncoderModel(nn.Module):
    """Token ids to hidden states: token embedding, positions, dropout, encoder.

    Args:
        config: the sizes and choices, see :class:`EncoderConfig`.

    Attributes:
        token_embedding: :class:`TokenEmbedding`.
        positional: the positional module added to the token vectors (learned or
            sinusoidal), or None (for ``"none"`` and ``"rotary"``; rotary acts inside
            attention, on queries and keys).
        encoder: :class:`~transformer_lib.encoder.TransformerEncoder`.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.token_embedding = TokenEmbedding(c.vocab_size, c.d_model, scale=c.scale_embedding)
        self.positional: nn.Module | None = None
        if c.positional == "learned":
            self.positional = LearnedPositionalEmbedding(c.d_model, c.max_len)
        elif c.positional == "sinusoidal":
            self.positional = SinusoidalPositionalEncoding(c.d_model, c.max_len)
        rope = (
            RotaryEmbedding(head_dim_for(c.d_model, c.n_heads), base=c.rope_base)
            if c.positional == "rotary"
            else None
        )
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(
            c.n_layers,
            c.d_model,
            c.n_heads,
            c.d_ff,
            dropout=c.dropout,
            activation=c.activation,
            norm_first=c.norm_first,
            layer_norm_eps=c.layer_norm_eps,
            rope=rope,
        )

    def forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode a batch of token ids.

        Args:
            ids: (B, L) token ids.
            mask: bool, broadcastable to (B, h, L, L), True = may attend; by default the
                padding mask of ``config.pad_id`` (or no mask when it is None), built with
                :func:`~transformer_lib.attention.padding_mask` as (B, 1, 1, L). A (B, L)
                mask would be read as (L_q, L_k).
            return_weights: also return every layer's attention weights.

        Returns:
            Hidden states (B, L, d_model), or ``(hidden, [weights per layer])``.
        """
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, L), got shape {tuple(ids.shape)}")
        if mask is None and self.config.pad_id is not None:
            mask = padding_mask(ids, self.config.pad_id)
        x = self.token_embedding(ids)
        if self.positional is not None:
            x = self.positional(x)
        return self.encoder(self.dropout(x), mask, return_weights=return_weights)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average the token vectors of each sequence, ignoring padding.

    Args:
        hidden: (B, L, d).
        attention_mask: (B, L), 1/True at real tokens; None averages every position.

    Returns:
        (B, d). A sequence with no real token gives zeros.
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"attention_mask must be (B, L) = {tuple(hidden.shape[:2])}, "
            f"got shape {tuple(attention_mask.shape)}"
        )
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class SequenceClassifier(nn.Module):
    """One label per sequence: the encoder, a mean over real tokens, a linear layer.

    Attributes:
        model: :class:`TransformerEncoderModel`.
        classifier: ``nn.Linear(d_model, n_classes)``.
    """

    def __init__(self, config: EncoderConfig, n_classes: int) -> None:
        super().__init__()
        self.model = TransformerEncoderModel(config)
        self.classifier = nn.Linear(config.d_model, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) -> logits (B, n_classes)."""
        hidden = self.model(ids)
        pad_id = self.model.config.pad_id
        keep = None if pad_id is None else ids != pad_id
        return self.classifier(mean_pool(hidden, keep))


class TokenTagger(nn.Module):
    """One label per token: the encoder and a linear layer on every position.

    Attributes:
        model: :class:`TransformerEncoderModel`.
        classifier: ``nn.Linear(d_model, n_tags)``.
    """

    def __init__(self, config: EncoderConfig, n_tags: int) -> None:
        super().__init__()
        self.model = TransformerEncoderModel(config)
        self.classifier = nn.Linear(config.d_model, n_tags)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) -> logits (B, L, n_tags)."""
        return self.classifier(self.model(ids))
