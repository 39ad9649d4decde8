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
