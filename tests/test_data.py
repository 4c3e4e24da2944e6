"""Chapter 6's toy tasks: shapes, determinism, correctness and clear errors."""

import re

import pytest
import torch

from transformer_lib.data import IGNORE, copy_back_task, count_task, reversal_task, sort_task

TASKS = [reversal_task, sort_task, count_task, copy_back_task]


@pytest.mark.parametrize("task", TASKS)
def test_shapes_range_and_determinism(task):
    inputs, targets = task(50, 8, 10, seed=3)
    assert inputs.shape == targets.shape == (50, 8)
    assert inputs.dtype == targets.dtype == torch.long
    assert inputs.min() >= 1 and inputs.max() <= 9  # 0 is padding, never drawn
    again = task(50, 8, 10, seed=3)
    assert torch.equal(inputs, again[0]) and torch.equal(targets, again[1])
    other = task(50, 8, 10, seed=4)
    assert not torch.equal(inputs, other[0])


def test_targets_are_right():
    x, y = reversal_task(5, 6, 10)
    assert torch.equal(y[:, 0], x[:, -1]) and torch.equal(y, x.flip(-1))
    x, y = sort_task(5, 6, 10)
    assert (y[:, 1:] >= y[:, :-1]).all() and torch.equal(y.sort(-1).values, x.sort(-1).values)
    x, y = copy_back_task(5, 6, 10, k=2)
    assert (y[:, :2] == IGNORE).all() and torch.equal(y[:, 2:], x[:, :4])
    seq, counts = count_task(3, 4, 5, seed=1)
    for row, c in zip(seq, counts, strict=True):
        for i, token in enumerate(row):
            assert c[i] == (row == token).sum()


@pytest.mark.parametrize(
    ("task", "args", "message"),
    [
        (reversal_task, (0, 5, 10), "n_samples must be at least 1, got 0"),
        (sort_task, (3, 0, 10), "length must be at least 1, got 0"),
        (count_task, (3, 4, 1), "vocab_size must be at least 2 (id 0 is padding), got 1"),
        (copy_back_task, (3, 5, 10), None),
        (copy_back_task, (3, 0, 10), "length must be at least 1, got 0"),
        (copy_back_task, (3, -2, 10), "length must be at least 1, got -2"),
        (copy_back_task, (0, 5, 10), "n_samples must be at least 1, got 0"),
    ],
    ids=["n_samples", "length", "vocab", "k", "copy-length-0", "copy-length-neg", "copy-n"],
)
def test_bad_arguments(task, args, message):
    """copy_back_task(length <= 0) used to complain about k."""
    if message is None:  # k too large for the length
        with pytest.raises(ValueError, match=re.escape("k must be in 1..length-1 = 1..4, got k=5")):
            task(*args, k=5)
        return
    with pytest.raises(ValueError, match=re.escape(message)):
        task(*args)
