"""Chapter 5: one encoder layer small enough to compute by hand, and every step it takes.

:func:`humane_encoder_layer` builds a post-LN ReLU :class:`~transformer_lib.encoder.EncoderLayer`
with d_model = 4, 2 heads and d_ff = 8, whose weights are small integers; :func:`humane_input`
is 4 token vectors of small integers; :func:`encoder_layer_steps` runs the layer's own
modules one step at a time and returns every intermediate matrix, in order.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange

from transformer_lib.encoder import ACTIVATIONS, EncoderLayer

__all__ = ["encoder_layer_steps", "humane_encoder_layer", "humane_input"]

# Weights are written as PyTorch stores them, (out_features, in_features): y = x W^T + b.
_W_Q = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
_W_K = [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
_W_V = [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
_W_O = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
_W_1 = [
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
    [-1, 0, 0, 0],
    [0, -1, 0, 0],
    [0, 0, -1, 0],
    [0, 0, 0, -1],
]
_B_1 = [0, 0, 0, 0, 0, 0, 0, 0]
_W_2 = [
    [1, 0, 0, 0, 0, 1, 0, 0],
    [0, 1, 0, 0, 1, 0, 0, 0],
    [0, 0, 1, 0, 0, 0, 0, 1],
    [0, 0, 0, 1, 0, 0, 1, 0],
]
_X = [[1, 0, 1, 0], [0, 2, 0, 1], [1, 1, 0, 0], [0, 0, 1, 2]]


def humane_encoder_layer() -> EncoderLayer:
    """A post-LN ReLU encoder layer (d_model 4, 2 heads, d_ff 8) with small integer weights.

    All biases are zero, LayerNorms have γ = 1 and β = 0, and there is no dropout, so every
    step is arithmetic a reader can redo on paper.

    Returns:
        The layer, in evaluation mode, float64.
    """
    layer = EncoderLayer(4, 2, 8, dropout=0.0, activation="relu", norm_first=False)
    layer = layer.double()
    weights = {
        "self_attn.q_proj.weight": _W_Q,
        "self_attn.k_proj.weight": _W_K,
        "self_attn.v_proj.weight": _W_V,
        "self_attn.out_proj.weight": _W_O,
        "ff.linear1.weight": _W_1,
        "ff.linear1.bias": _B_1,
        "ff.linear2.weight": _W_2,
    }
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name in weights:
                p.copy_(torch.tensor(weights[name], dtype=torch.float64))
            elif name.endswith("bias"):
                p.zero_()
            else:  # LayerNorm gains
                p.fill_(1.0)
    return layer.eval()


def humane_input() -> torch.Tensor:
    """Four token vectors of small integers, (B=1, L=4, d_model=4), float64."""
    return torch.tensor([_X], dtype=torch.float64)


def encoder_layer_steps(layer: EncoderLayer, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run a post-LN ``layer`` on one sequence, step by step, with the layer's own modules.

    Args:
        layer: a post-LN :class:`~transformer_lib.encoder.EncoderLayer` in evaluation mode.
        x: (1, L, d_model).

    Returns:
        An ordered dict of every intermediate matrix of the one sequence, in order "X", per head
        "Q (head i)", "K (head i)", "V (head i)", "scores (head i)", "scaled scores (head i)",
        "weights (head i)", "head output (head i)", then "concatenated heads",
        "attention output", "residual 1", "LayerNorm 1", "FFN hidden", "ReLU", "FFN output",
        "residual 2", "LayerNorm 2" (the layer's output).

    Raises:
        ValueError: the layer is pre-LN or in training mode, or x is not one sequence.
    """
    if layer.norm_first or layer.training:
        raise ValueError("encoder_layer_steps: needs a post-LN layer in evaluation mode")
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"encoder_layer_steps: x must be (1, L, d_model), got {tuple(x.shape)}")
    attn = layer.self_attn
    steps: dict[str, torch.Tensor] = {"X": x[0]}
    split = "b l (h head_dim) -> h b l head_dim"
    q = rearrange(attn.q_proj(x), split, h=attn.n_heads)[:, 0]  # (h, L, head_dim)
    k = rearrange(attn.k_proj(x), split, h=attn.n_heads)[:, 0]
    v = rearrange(attn.v_proj(x), split, h=attn.n_heads)[:, 0]
    heads = []
    for i in range(attn.n_heads):
        scores = q[i] @ k[i].T
        scaled = scores / math.sqrt(attn.head_dim)
        weights = scaled.softmax(dim=-1)
        head = weights @ v[i]
        heads.append(head)
        steps |= {
            f"Q (head {i})": q[i],
            f"K (head {i})": k[i],
            f"V (head {i})": v[i],
            f"scores (head {i})": scores,
            f"scaled scores (head {i})": scaled,
            f"weights (head {i})": weights,
            f"head output (head {i})": head,
        }
    concatenated = torch.cat(heads, dim=-1)
    attended = attn.out_proj(concatenated)
    residual1 = x[0] + attended
    normed1 = layer.norm1(residual1)
    hidden = layer.ff.linear1(normed1)
    activated = ACTIVATIONS[layer.ff.activation](hidden)
    ff_out = layer.ff.linear2(activated)
    residual2 = normed1 + ff_out
    normed2 = layer.norm2(residual2)
    steps |= {
        "concatenated heads": concatenated,
        "attention output": attended,
        "residual 1": residual1,
        "LayerNorm 1": normed1,
        "FFN hidden": hidden,
        "ReLU": activated,  # the activation, whichever the layer uses
        "FFN output": ff_out,
        "residual 2": residual2,
        "LayerNorm 2": normed2,
    }
    return steps
