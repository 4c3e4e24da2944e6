"""Chapter 8: the whole Transformer, encoder and decoder, with teacher forcing and greedy decoding."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from transformer_lib.attention import causal_mask, padding_mask
from transformer_lib.decoder import DecoderWeights, KVCache, TransformerDecoder
from transformer_lib.encoder import ACTIVATIONS, TransformerEncoder
from transformer_lib.model import POSITIONAL_ENCODINGS, TokenEmbedding
from transformer_lib.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from transformer_lib.training import History, _seeded

__all__ = ["Seq2SeqConfig", "Seq2SeqTransformer", "exact_match", "train_seq2seq"]


@dataclass
class Seq2SeqConfig:
    """Everything that defines a :class:`Seq2SeqTransformer`."""

    src_vocab_size: int  # number of source token ids
    tgt_vocab_size: int  # number of target token ids
    d_model: int = 64  # width of every token vector
    n_heads: int = 4  # attention heads per layer; must divide d_model
    d_ff: int = 256  # hidden width of the feed-forward networks
    n_encoder_layers: int = 2  # encoder layers
    n_decoder_layers: int = 2  # decoder layers
    max_len: int = 64  # longest source, and most target positions decoded
    positional: str = "sinusoidal"  # "none", "learned", "sinusoidal" or "rotary"
    dropout: float = 0.1  # dropout everywhere (training only)
    activation: str = "relu"  # feed-forward activation: "relu" or "gelu"
    norm_first: bool = False  # pre-LN (True) or post-LN (False)
    pad_id: int = 0  # padding id of both vocabularies, masked out as a key
    tie_embeddings: bool = False  # the output layer reuses the target embedding's weights

    def __post_init__(self) -> None:
        if self.positional not in POSITIONAL_ENCODINGS:
            raise ValueError(
                f"unknown positional {self.positional!r}; expected one of {POSITIONAL_ENCODINGS}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; expected one of {sorted(ACTIVATIONS)}"
            )
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("n_encoder_layers", "n_decoder_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(
                f"pad_id={self.pad_id} is not a token id of both vocabularies "
                f"(src_vocab_size={self.src_vocab_size}, tgt_vocab_size={self.tgt_vocab_size})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _positional_module(kind: str, d_model: int, max_len: int) -> nn.Module | None:
    if kind == "learned":
        return LearnedPositionalEmbedding(d_model, max_len)
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    return None  # "none", and "rotary", which acts inside attention


class Seq2SeqTransformer(nn.Module):
    """The encoder–decoder Transformer: source ids in, next-target-token logits out.

    Args:
        config: the sizes and choices, see :class:`Seq2SeqConfig`.

    Attributes:
        src_embedding, tgt_embedding: :class:`~transformer_lib.model.TokenEmbedding`
            (scaled by √d_model) of the two vocabularies.
        src_positional, tgt_positional: the positional modules added to the token vectors
            (learned or sinusoidal), or None for ``"none"`` and ``"rotary"`` (rotary acts
            in the self-attentions of both stacks, never in cross-attention).
        encoder: :class:`~transformer_lib.encoder.TransformerEncoder`.
        decoder: :class:`~transformer_lib.decoder.TransformerDecoder`.
        lm_head: ``nn.Linear(d_model, tgt_vocab_size)``, tied to ``tgt_embedding`` when
            ``tie_embeddings``.
    """

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = c = config
        self.src_embedding = TokenEmbedding(c.src_vocab_size, c.d_model)
        self.tgt_embedding = TokenEmbedding(c.tgt_vocab_size, c.d_model)
        self.src_positional = _positional_module(c.positional, c.d_model, c.max_len)
        self.tgt_positional = _positional_module(c.positional, c.d_model, c.max_len)
        rope = RotaryEmbedding(c.d_model // c.n_heads) if c.positional == "rotary" else None
        options = dict(
            dropout=c.dropout, activation=c.activation, norm_first=c.norm_first, rope=rope
        )
        self.dropout = nn.Dropout(c.dropout)
        self.encoder = TransformerEncoder(
            c.n_encoder_layers, c.d_model, c.n_heads, c.d_ff, **options
        )
        self.decoder = TransformerDecoder(
            c.n_decoder_layers, c.d_model, c.n_heads, c.d_ff, **options
        )
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.lm_head.weight = self.tgt_embedding.embedding.weight

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src: (B, S) ids, right-padded with ``pad_id`` -> ``(memory, memory_mask)``.

        ``memory`` is (B, S, d_model); ``memory_mask`` (B, 1, 1, S) is True at real tokens.
        """
        if src.dim() != 2:
            raise ValueError(f"src must be (B, S) token ids, got shape {tuple(src.shape)}")
        self._check_positions(src.shape[1], 0, "source")
        memory_mask = padding_mask(src, self.config.pad_id)
        x = self._embed(self.src_embedding, self.src_positional, src, 0)
        return self.encoder(x, memory_mask), memory_mask

    def decode(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        *,
        self_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[DecoderWeights]]:
        """Next-token logits for target positions, given the memory.

        Args:
            tgt: (B, L) target ids; with a cache, the positions after the cached ones.
            memory, memory_mask: from :meth:`encode`.
            self_mask: as in :meth:`~transformer_lib.decoder.TransformerDecoder.forward`; None means causal.
            cache: a :class:`~transformer_lib.decoder.KVCache` to read and extend.
            return_weights: also return the decoder's attention weights.

        Returns:
            Logits (B, L, tgt_vocab_size), or ``(logits, [DecoderWeights per layer])``.
        """
        if tgt.dim() != 2:
            raise ValueError(f"tgt must be (B, L) token ids, got shape {tuple(tgt.shape)}")
        offset = 0 if cache is None else cache.length
        self._check_positions(tgt.shape[1], offset, "target")
        x = self._embed(self.tgt_embedding, self.tgt_positional, tgt, offset)
        out = self.decoder(
            x,
            memory,
            self_mask=self_mask,
            memory_mask=memory_mask,
            cache=cache,
            return_weights=return_weights,
        )
        if return_weights:
            hidden, weights = out
            return self.lm_head(hidden), weights
        return self.lm_head(out)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits for every target position at once.

        Args:
            src: (B, S) source ids, right-padded with ``pad_id``.
            tgt_in: (B, T) the target shifted right: BOS followed by all but the last token.

        Returns:
            Logits (B, T, tgt_vocab_size); position t predicts token t + 1 of ``BOS target``.
        """
        memory, memory_mask = self.encode(src)
        T = tgt_in.shape[1]
        self_mask = causal_mask(T, device=tgt_in.device) & padding_mask(tgt_in, self.config.pad_id)
        return self.decode(tgt_in, memory, memory_mask, self_mask=self_mask)

    @torch.no_grad()
    def generate(
        self,
        src: torch.Tensor,
        *,
        max_new_tokens: int,
        bos_id: int,
        eos_id: int,
        use_cache: bool = True,
        return_logits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding, in evaluation mode (the mode is restored afterwards).

        Each step feeds the token chosen last (with a cache) or the whole prefix
        (without one) and picks the most likely next token. A sequence stops at its own
        EOS and is padded with ``pad_id`` after it; decoding ends when every sequence
        has stopped or after ``max_new_tokens`` steps.

        Args:
            src: (B, S) source ids, right-padded with ``pad_id``.
            max_new_tokens: most tokens to generate, at most ``max_len``.
            bos_id, eos_id: the start and end tokens of the target vocabulary.
            use_cache: keep keys and values in a :class:`~transformer_lib.decoder.KVCache`.
            return_logits: also return each step's logits.

        Returns:
            LongTensor (B, T) with T ≤ ``max_new_tokens``, BOS not included; with
            ``return_logits`` also the logits (B, T, tgt_vocab_size) of every step.
        """
        if not 1 <= max_new_tokens <= self.config.max_len:
            raise ValueError(
                f"max_new_tokens must be in 1..max_len={self.config.max_len}, got {max_new_tokens}"
            )
        was_training = self.training
        self.eval()
        try:
            return self._greedy(src, max_new_tokens, bos_id, eos_id, use_cache, return_logits)
        finally:
            self.train(was_training)

    def _greedy(
        self,
        src: torch.Tensor,
        max_new_tokens: int,
        bos_id: int,
        eos_id: int,
        use_cache: bool,
        return_logits: bool,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        memory, memory_mask = self.encode(src)
        B = src.shape[0]
        cache = KVCache(len(self.decoder.layers)) if use_cache else None
        fed = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)  # BOS, then tokens
        finished = torch.zeros(B, dtype=torch.bool, device=src.device)
        tokens, step_logits = [], []
        for _ in range(max_new_tokens):
            new = fed[:, -1:] if use_cache else fed  # with a cache, only the newest token
            logits = self.decode(new, memory, memory_mask, cache=cache)[:, -1]  # (B, V)
            token = logits.argmax(-1).masked_fill(finished, self.config.pad_id)
            tokens.append(token)
            step_logits.append(logits)
            finished |= token == eos_id
            if finished.all():
                break
            fed = torch.cat([fed, token[:, None]], dim=1)
        out = torch.stack(tokens, dim=1)
        return (out, torch.stack(step_logits, dim=1)) if return_logits else out

    def _embed(
        self,
        embedding: TokenEmbedding,
        positional: nn.Module | None,
        ids: torch.Tensor,
        offset: int,
    ) -> torch.Tensor:
        """Token vectors plus the positions offset..offset+L-1, then dropout."""
        x = embedding(ids)
        L = ids.shape[1]
        if isinstance(positional, SinusoidalPositionalEncoding):
            x = x + positional.pe[offset : offset + L].to(x.dtype)
        elif isinstance(positional, LearnedPositionalEmbedding):
            x = x + positional.embedding.weight[offset : offset + L].to(x.dtype)
        return self.dropout(x)

    def _check_positions(self, length: int, offset: int, what: str) -> None:
        if offset + length > self.config.max_len:
            raise ValueError(
                f"{what} positions {offset}..{offset + length - 1} go beyond "
                f"max_len={self.config.max_len}; build the model with a larger max_len"
            )


def _lr_factor(step: int, steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then a cosine decay to 0 at the last step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_seq2seq(
    model: Seq2SeqTransformer,
    src: torch.Tensor,
    tgt: torch.Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_steps: int = 0,
    log_every: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Teacher forcing with AdamW: feed ``tgt[:, :-1]``, predict ``tgt[:, 1:]``.

    The learning rate warms up linearly, then decays to 0 along a cosine. Batches are
    drawn at random with a generator seeded by ``seed``; the global random state (used
    by dropout) is forked, so the rest of the program draws as if this had not run.

    Args:
        model: the model to train (left in evaluation mode).
        src: (N, S) source ids; tgt: (N, T) ``BOS target EOS`` ids, both padded with ``pad_id``.
        steps, batch_size, lr, weight_decay, warmup_steps: the optimisation.
        log_every: steps between the training-loss records of the returned history.
        seed: seeds the batch order and dropout.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`~transformer_lib.training.History` with ``step``, ``loss`` and ``lr``.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if len(src) != len(tgt):
        raise ValueError(f"src and tgt differ in length: {len(src)} vs {len(tgt)}")
    pad_id = model.config.pad_id
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, steps, warmup_steps)
    )
    history = History()
    with _seeded(model, seed):
        model.train()
        bar = tqdm(range(1, steps + 1), disable=not progress, desc="training")
        for step in bar:
            index = torch.randint(len(src), (batch_size,), generator=generator)
            batch_src, batch_tgt = _trim(src[index], pad_id), _trim(tgt[index], pad_id)
            logits = model(batch_src, batch_tgt[:, :-1])  # teacher forcing: the shifted target
            loss = F.cross_entropy(
                logits.flatten(0, 1), batch_tgt[:, 1:].flatten(), ignore_index=pad_id
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % log_every == 0 or step == 1:
                history.record(step, loss.item(), schedule.get_last_lr()[0])
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            schedule.step()
    model.eval()
    return history


def _trim(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop the columns that are padding in every row."""
    length = int((ids != pad_id).sum(1).max())
    return ids[:, :length]


@torch.no_grad()
def exact_match(
    model: Seq2SeqTransformer,
    src: torch.Tensor,
    tgt: torch.Tensor,
    *,
    bos_id: int,
    eos_id: int,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Which sequences greedy decoding gets exactly right, EOS included.

    Args:
        src: (N, S) source ids; tgt: (N, T) ``BOS target EOS`` ids, padded with ``pad_id``.

    Returns:
        A bool tensor (N,), True where the generated tokens equal ``tgt[:, 1:]`` up to its EOS.
    """
    pad_id = model.config.pad_id
    expected = tgt[:, 1:]
    correct = []
    for start in range(0, len(src), batch_size):
        want = _trim(expected[start : start + batch_size], pad_id)
        got = model.generate(
            _trim(src[start : start + batch_size], pad_id),
            max_new_tokens=want.shape[1],
            bos_id=bos_id,
            eos_id=eos_id,
        )
        got = F.pad(got, (0, want.shape[1] - got.shape[1]), value=pad_id)
        correct.append((got == want).all(dim=1))
    return torch.cat(correct)
