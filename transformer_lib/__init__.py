"""transformer_lib: the Transformer encoder built chapter by chapter in *Self-Attention from Scratch*.

One module per chapter:

* :mod:`transformer_lib.attention` (Chapter 1): scaled dot-product attention and masks.
* :mod:`transformer_lib.multi_head` (Chapter 2): multi-head attention.
* :mod:`transformer_lib.positional` (Chapter 3): learned, sinusoidal and rotary positions.
* :mod:`transformer_lib.encoder` (Chapter 4): feed-forward, encoder layer and stack.
* :mod:`transformer_lib.model`: token ids to hidden states, with task heads.
* :mod:`transformer_lib.data`, :mod:`transformer_lib.training` (Chapter 6): toy tasks and a training loop.
* :mod:`transformer_lib.pretrained` (Chapter 7): BERT checkpoints such as all-MiniLM-L6-v2.
* :mod:`transformer_lib.decoder`, :mod:`transformer_lib.seq2seq`, :mod:`transformer_lib.korean_numbers` (Chapter 8): the decoder, its KV cache, the encoder–decoder model and its task.
* :mod:`transformer_lib.efficient` (Chapter 9): online softmax, chunked and tiled (FlashAttention-style) attention.
* :mod:`transformer_lib.interop`: converters to and from PyTorch's modules (``from_torch``/``to_torch``).
* :mod:`transformer_lib.viz`: plotting helpers used by the chapters.
"""

from transformer_lib.attention import causal_mask, padding_mask, scaled_dot_product_attention
from transformer_lib.decoder import DecoderLayer, KVCache, TransformerDecoder
from transformer_lib.efficient import chunked_attention, flash_attention, online_softmax
from transformer_lib.encoder import EncoderLayer, FeedForward, TransformerEncoder
from transformer_lib.model import (
    EncoderConfig,
    SequenceClassifier,
    TokenTagger,
    TransformerEncoderModel,
)
from transformer_lib.multi_head import MultiHeadAttention
from transformer_lib.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from transformer_lib.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from transformer_lib.viz import plot_attention

__all__ = [
    "EncoderConfig",
    "SequenceClassifier",
    "TokenTagger",
    "TransformerEncoderModel",
    "EncoderLayer",
    "FeedForward",
    "TransformerEncoder",
    "DecoderLayer",
    "KVCache",
    "TransformerDecoder",
    "Seq2SeqConfig",
    "Seq2SeqTransformer",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "MultiHeadAttention",
    "causal_mask",
    "chunked_attention",
    "flash_attention",
    "online_softmax",
    "padding_mask",
    "plot_attention",
    "scaled_dot_product_attention",
]

__version__ = "0.1.0"
