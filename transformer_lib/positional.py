"""Chapter 3: positional encodings, learned, sinusoidal and rotary (RoPE).

Attention alone is permutation-equivariant (Chapter 1), so word order has to be put in:

* :class:`LearnedPositionalEmbedding` adds one trained vector per position (BERT);
* :class:`SinusoidalPositionalEncoding` adds fixed sines and cosines (the Transformer paper);
* :class:`RotaryEmbedding` rotates queries and keys by an angle proportional to the
  position, so that their dot product depends only on the distance (RoFormer, Llama).

Rotary angles are computed in float64 (positions up to 2**53 are exact there, and the
angle of position 10^6 is off by about 1e-10), and only their cosines and sines are cast
to the dtype the rotation is computed in: float32 for float32 and half-precision inputs,
float64 for float64 inputs.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = [
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionalEncoding",
    "apply_rotary",
    "rotary_angles",
    "sinusoidal_table",
]


def _check_length(length: int, max_len: int, owner: str) -> None:
    if length > max_len:
        raise ValueError(
            f"{owner}: sequence length L={length} exceeds max_len={max_len}; "
            f"build it with max_len >= {length}"
        )


def _check_head_dim(head_dim: int) -> None:
    if head_dim % 2 != 0:
        raise ValueError(f"rotary embedding needs an even head_dim, got head_dim={head_dim}")


def _check_floating(x: torch.Tensor, owner: str) -> None:
    if not x.is_floating_point():
        raise TypeError(
            f"{owner}: x must be floating point, got dtype {x.dtype} "
            "(a rotated integer vector would be truncated back to integers)"
        )


def _check_positive(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {name}={value!r}")


def _check_last_dim(x: torch.Tensor, d_model: int, owner: str) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(
            f"{owner}: x must be (B, L, d_model={d_model}), got shape {tuple(x.shape)}"
        )


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The paper's sinusoidal table, interleaved layout.

    ``PE[pos, 2i] = sin(pos / base^(2i/d_model))`` and
    ``PE[pos, 2i+1] = cos(pos / base^(2i/d_model))``.

    Args:
        max_len: number of positions.
        d_model: width; must be even (each frequency fills a sin/cos pair).
        base: the geometric base of the wavelengths.

    Returns:
        float32 (max_len, d_model).
    """
    if d_model % 2 != 0:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got d_model={d_model}")
    position = torch.arange(max_len, dtype=torch.float64)
    frequency = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angle = torch.outer(position, frequency)  # (max_len, d_model/2)
    pairs = torch.stack([angle.sin(), angle.cos()], dim=-1)  # (max_len, d_model/2, 2)
    return rearrange(pairs, "pos half two -> pos (half two)").float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table of :func:`sinusoidal_table` to the token vectors.

    Args:
        d_model: width of the token vectors; must be even.
        max_len: the longest sequence it accepts.
        base: the geometric base of the wavelengths.

    Attributes:
        pe: the table, (max_len, d_model), a non-persistent buffer (not in state_dict).
    """

    def __init__(self, d_model: int, max_len: int = 4096, base: float = 10000.0) -> None:
        super().__init__()
        _check_positive("SinusoidalPositionalEncoding", d_model=d_model, max_len=max_len)
        self.d_model, self.max_len, self.base = d_model, max_len, base
        self.register_buffer("pe", sinusoidal_table(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d_model) -> x + PE[:L], (B, L, d_model)."""
        _check_last_dim(x, self.d_model, "SinusoidalPositionalEncoding")
        _check_length(x.shape[1], self.max_len, "SinusoidalPositionalEncoding")
        return x + self.pe[: x.shape[1]].to(x.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}, base={self.base:g}"


class LearnedPositionalEmbedding(nn.Module):
    """Adds one trained vector per position (as BERT does).

    Args:
        d_model: width of the token vectors.
        max_len: number of positions it has vectors for; longer inputs are an error.

    Attributes:
        embedding: ``nn.Embedding(max_len, d_model)``; row p is the vector of position p,
            initialised N(0, 0.02²) as in BERT.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        _check_positive("LearnedPositionalEmbedding", d_model=d_model, max_len=max_len)
        self.d_model, self.max_len = d_model, max_len
        self.embedding = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, d_model) -> x + P[:L], (B, L, d_model), in the dtype of ``x``."""
        _check_last_dim(x, self.d_model, "LearnedPositionalEmbedding")
        _check_length(x.shape[1], self.max_len, "LearnedPositionalEmbedding")
        return x + self.embedding.weight[: x.shape[1]].to(x.dtype)


def rotary_angles(
    length: int,
    head_dim: int,
    *,
    base: float = 10000.0,
    offset: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rotation angles ``(offset + m) · θ_i`` with ``θ_i = base^(-2i/head_dim)``.

    Args:
        length: number of positions L.
        head_dim: width of a head; must be even.
        base: the geometric base of the frequencies.
        offset: position of the first row.
        device: where to create the angles.

    Returns:
        float64 (L, head_dim/2); row m, column i is the angle of pair i at position
        offset + m. Float64 keeps large positions exact: in float32, positions above 2**24
        are rounded and the angle of position 16 000 is already off by about 1e-3.
        (On Apple's MPS, which has no float64, the angles are computed on the CPU.)
    """
    _check_head_dim(head_dim)
    if device is not None and torch.device(device).type == "mps":
        device = "cpu"
    exponent = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim
    theta = base**-exponent
    position = torch.arange(offset, offset + length, dtype=torch.float64, device=device)
    return torch.outer(position, theta)


def apply_rotary(
    x: torch.Tensor, angles: torch.Tensor, *, interleaved: bool = False
) -> torch.Tensor:
    """Rotate each dimension pair of ``x`` by its angle, in at least float32.

    Args:
        x: (..., L, head_dim), floating point.
        angles: (L, head_dim/2), as :func:`rotary_angles` gives them (float64); broadcast
            over every leading axis of ``x`` (batch, heads). Their cosines and sines are
            taken in the angles' dtype, then cast to the compute dtype.
        interleaved: pair dimensions (2i, 2i+1) as the RoFormer paper does; otherwise
            pair i with i + head_dim/2 (the split-half layout of Hugging Face's Llama).

    Returns:
        The rotated tensor, same shape and dtype as ``x``. Half-precision inputs are
        rotated in float32 and cast back; float64 stays float64.

    Raises:
        TypeError: ``x`` is not floating point.
    """
    _check_floating(x, "apply_rotary")
    compute_dtype = torch.promote_types(x.dtype, torch.float32)
    cos = angles.cos().to(device=x.device, dtype=compute_dtype)
    sin = angles.sin().to(device=x.device, dtype=compute_dtype)
    xf = x.to(compute_dtype)
    if interleaved:
        pairs = rearrange(xf, "... l (half two) -> ... l half two", two=2)
        a, b = pairs[..., 0], pairs[..., 1]
    else:
        a, b = rearrange(xf, "... l (two half) -> two ... l half", two=2)
    rotated_a = a * cos - b * sin
    rotated_b = a * sin + b * cos
    if interleaved:
        out = rearrange([rotated_a, rotated_b], "two ... l half -> ... l (half two)")
    else:
        out = rearrange([rotated_a, rotated_b], "two ... l half -> ... l (two half)")
    return out.to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) for queries and keys of one head.

    The dimension pairs ``(x_a, x_b)`` of frequency ``θ_i = base^(-2i/head_dim)`` are
    rotated by the angle ``(offset + m) · θ_i`` at position m. Then
    ``rope(q)[m] · rope(k)[n]`` depends on the positions only through ``m - n``.

    Args:
        head_dim: width of one head; must be even.
        base: the geometric base of the frequencies.
        interleaved: pairs (2i, 2i+1) (RoFormer) instead of (i, i + head_dim/2) (Llama).
    """

    def __init__(self, head_dim: int, *, base: float = 10000.0, interleaved: bool = False) -> None:
        super().__init__()
        _check_head_dim(head_dim)
        self.head_dim, self.base, self.interleaved = head_dim, base, interleaved

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x: (..., L, head_dim), floating point -> rotated, same shape and dtype.

        The rows are positions offset..offset+L-1. Integer inputs raise a ``TypeError``.
        """
        _check_floating(x, "RotaryEmbedding")
        if x.dim() < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"RotaryEmbedding: x must be (..., L, head_dim={self.head_dim}), "
                f"got shape {tuple(x.shape)}"
            )
        angles = rotary_angles(
            x.shape[-2], self.head_dim, base=self.base, offset=offset, device=x.device
        )
        return apply_rotary(x, angles, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}, interleaved={self.interleaved}"
