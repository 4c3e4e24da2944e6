"""The benchmarks' one timing helper, on ``torch.utils.benchmark.Timer``.

Candidates take turns (interleaved rounds), so that drifting machine load hits all alike;
each round is one ``Timer.timeit`` measurement, and the result is the median over rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
from torch.utils.benchmark import Timer


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], *, repeats: int = 15, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each candidate, measured in turn over ``repeats`` rounds."""
    timers = {
        name: Timer(
            stmt="fn()",
            globals={"fn": fn},
            label=name,
            num_threads=torch.get_num_threads(),  # Timer's default would be one thread
        )
        for name, fn in candidates.items()
    }
    for timer in timers.values():
        timer.timeit(warmup)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(1).median)
    return {name: statistics.median(times) for name, times in samples.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> dict[str, float]:
    """Print one row per candidate (median ms and ratio to ``baseline``); return the ratios."""
    print(f"\n{title}")
    ratios = {}
    for name, seconds in medians.items():
        ratios[name] = seconds / medians[baseline]
        print(f"  {name:<34} {seconds * 1e3:9.2f} ms   {ratios[name]:5.2f}x {baseline}")
    return ratios
