"""Latency statistics in milliseconds from per-run timings."""

from __future__ import annotations

import numpy as np


def latency_stats(times_s: list[float] | np.ndarray) -> dict[str, float]:
    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.size == 0:
        raise ValueError("no timings")
    mean = float(t.mean())
    std = float(t.std(ddof=1)) if t.size > 1 else 0.0
    return {
        "count": int(t.size),
        "mean_ms": mean,
        "median_ms": float(np.median(t)),
        "p90_ms": float(np.percentile(t, 90)),
        "p99_ms": float(np.percentile(t, 99)),
        "std_ms": std,
        "cv": std / mean if mean else 0.0,
        "min_ms": float(t.min()),
        "max_ms": float(t.max()),
    }


def segment_spread(times_s: list[float] | np.ndarray, segments: int = 5) -> float:
    """How far apart the medians of ``segments`` consecutive stretches of the
    runs are, as a share of the overall median: (max - min) / median. A quiet
    machine gives a few percent; a stretch disturbed by another process shows
    up here even when the overall median hides it."""
    t = np.asarray(times_s, dtype=np.float64)
    if t.size < 2 * segments:
        segments = max(1, t.size // 2)
    if segments < 2:
        return 0.0
    meds = [float(np.median(s)) for s in np.array_split(t, segments)]
    return (max(meds) - min(meds)) / float(np.median(t))
