"""Chapter 6: seeded toy tasks that need attention and position.

Every generator returns ``(inputs, targets)``: ``inputs`` (N, L) token ids in
1..vocab_size-1 (id 0, :data:`PAD`, is never drawn), and ``targets`` (N, L) for token
tagging, where :data:`IGNORE` marks positions that are not graded.
"""

from __future__ import annotations

import torch

from transformer_lib.korean_numbers import korean_number, korean_number_pairs, split_numbers

__all__ = ["IGNORE", "PAD", "copy_back_task", "count_task", "reversal_task", "sort_task"]
__all__ += ["korean_number", "korean_number_pairs", "split_numbers"]  # Chapter 8's task

PAD = 0  #: the padding id, never drawn as a token
IGNORE = (
    -100
)  #: target of positions that are not graded (the default ignore_index of cross_entropy)


def _check_sizes(n_samples: int, length: int, vocab_size: int) -> None:
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (id 0 is padding), got {vocab_size}")


def _random_tokens(n_samples: int, length: int, vocab_size: int, seed: int) -> torch.Tensor:
    _check_sizes(n_samples, length, vocab_size)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab_size, (n_samples, length), generator=generator)


def reversal_task(
    n_samples: int, length: int, vocab_size: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag each position with the token at the mirrored position: targets = inputs reversed.

    Returns:
        The pair ``(inputs, targets)``, both (N, L), with ``targets[:, i] = inputs[:, L - 1 - i]``.
    """
    inputs = _random_tokens(n_samples, length, vocab_size, seed)
    return inputs, inputs.flip(-1)


def copy_back_task(
    n_samples: int, length: int, vocab_size: int, *, k: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag each position with the token k places back (a purely relative task).

    Returns:
        The pair ``(inputs, targets)``, both (N, L), with ``targets[:, i] = inputs[:, i - k]``;
        the first k positions have no such token and are ``IGNORE``.
    """
    _check_sizes(n_samples, length, vocab_size)
    if not 1 <= k < length:
        raise ValueError(f"k must be in 1..length-1 = 1..{length - 1}, got k={k}")
    inputs = _random_tokens(n_samples, length, vocab_size, seed)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, k:] = inputs[:, :-k]
    return inputs, targets


def sort_task(
    n_samples: int, length: int, vocab_size: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag position i with the i-th smallest token of the sequence.

    Returns:
        The pair ``(inputs, targets)``, both (N, L); the targets are the sorted inputs.
    """
    inputs = _random_tokens(n_samples, length, vocab_size, seed)
    return inputs, inputs.sort(dim=-1).values


def count_task(
    n_samples: int, length: int, vocab_size: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag each token with how often it occurs in its sequence (needs no position at all).

    Returns:
        The pair ``(inputs, targets)``, both (N, L); ``targets[n, i]``, in 1..L, counts
        ``inputs[n, i]`` in ``inputs[n]``.
    """
    inputs = _random_tokens(n_samples, length, vocab_size, seed)
    targets = (inputs.unsqueeze(-1) == inputs.unsqueeze(-2)).sum(-1)
    return inputs, targets
