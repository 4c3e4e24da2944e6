"""How the book prints a number that depends on the machine.

Floating-point results depend on summation order, which depends on the CPU's vector
width, the kernels PyTorch and its BLAS pick, and the thread count; training amplifies
the differences. Such a number (an accuracy, a loss, a difference against a reference,
a trained weight, a timing) is shown to the reader with :func:`measured`, which writes
it after the sign ``≈``. The book's regression test (nbval) masks every ``≈number``
before it compares outputs (``sanitize.cfg``), so the page shows the number while the
claim it supports is carried by an ``assert`` with an honest tolerance in the same cell.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["MEASURED_SIGN", "measured"]

#: The sign written before every machine-dependent number.
MEASURED_SIGN = "≈"


def measured(value: float | int | torch.Tensor | Iterable[float], spec: str = ".3g") -> str:
    """Format a machine-dependent number, or a short list of them, as ``≈number``.

    Args:
        value: a Python number, a tensor (any shape; a 0-d tensor prints as one number),
            or an iterable of numbers.
        spec: a format specification for each number, as in ``format(x, spec)``:
            ``".3g"`` (default), ``".2f"``, ``".1e"``, ``".1%"``...

    Returns:
        ``"≈0.943"`` for one number; ``"[≈0.39, ≈0.42]"`` for several (nested lists for
        tensors of rank ≥ 2).

    Raises:
        TypeError: ``value`` is not a number, a tensor or an iterable of numbers.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().tolist()
    if isinstance(value, bool):
        raise TypeError("measured: a bool is not a measurement")
    if isinstance(value, int | float):
        return f"{MEASURED_SIGN}{format(value, spec)}"
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return "[" + ", ".join(measured(item, spec) for item in value) + "]"
    raise TypeError(f"measured: expected a number, a tensor or numbers, got {type(value).__name__}")
