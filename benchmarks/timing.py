"""Interleaved timing: candidates take turns, so drifting machine load hits all alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_medians(
    candidates: dict[str, Callable[[], object]], *, repeats: int = 15, warmup: int = 3
) -> dict[str, float]:
    """Median seconds per call of each candidate, measured in turn over ``repeats`` rounds."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def report(title: str, medians: dict[str, float], baseline: str) -> dict[str, float]:
    """Print one row per candidate (median ms and ratio to ``baseline``); return the ratios."""
    print(f"\n{title}")
    ratios = {}
    for name, seconds in medians.items():
        ratios[name] = seconds / medians[baseline]
        print(f"  {name:<34} {seconds * 1e3:9.2f} ms   {ratios[name]:5.2f}x {baseline}")
    return ratios
