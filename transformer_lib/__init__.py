"""transformer_lib: the Transformer encoder built chapter by chapter in *Self-Attention from Scratch*.

One module per chapter:

* :mod:`transformer_lib.attention` (Chapter 1): scaled dot-product attention and masks.
* :mod:`transformer_lib.multi_head` (Chapter 2): multi-head attention.
* :mod:`transformer_lib.viz`: plotting helpers used by the chapters.
"""

from transformer_lib.attention import causal_mask, padding_mask, scaled_dot_product_attention
from transformer_lib.multi_head import MultiHeadAttention
from transformer_lib.viz import plot_attention

__all__ = [
    "MultiHeadAttention",
    "causal_mask",
    "padding_mask",
    "plot_attention",
    "scaled_dot_product_attention",
]

__version__ = "0.1.0"
