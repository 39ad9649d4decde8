"""The OVIC score (the Low-Power Image Recognition Challenge's On-device
Visual Intelligence Competition rules; Google Research, 2018-2020).

2018 rule: time every invoke (not pre-processing), skip the first image as
warm-up, add up per-image latency, and stop counting once the total reaches the
wall budget N x limit. Score = correct classifications among the images
finished within the budget, divided by N (N: the images after the warm-up one).

Frontier rule (2019-2020): accuracy (%) minus the empirical Pareto frontier
a(t) = k ln(t) + a0 at the mean latency t (ms)."""

from __future__ import annotations

import math
from typing import Any, Sequence

from odml.errors import OdmlError


def ovic_2018(latencies_ms: Sequence[float], correct: Sequence[bool], limit_ms: float = 33.0) -> dict[str, Any]:
    if limit_ms <= 0:
        raise OdmlError(f"OVIC per-image limit must be positive, got {limit_ms} ms")
    if len(latencies_ms) != len(correct) or len(latencies_ms) < 2:
        raise OdmlError("OVIC needs at least two images (the first is a warm-up)")
    lat, ok = list(latencies_ms)[1:], list(correct)[1:]
    n = len(lat)
    budget = n * limit_ms
    total = 0.0
    within = right = 0
    for t, c in zip(lat, ok):
        total += t
        if total > budget:
            break
        within += 1
        right += bool(c)
    return {
        "images": n,
        "limit_ms": limit_ms,
        "budget_ms": budget,
        "within_budget": within,
        "correct_within_budget": right,
        "accuracy": sum(bool(c) for c in ok) / n,
        "mean_latency_ms": sum(lat) / n,
        "score": right / n,
    }


def ovic_frontier(accuracy: float, mean_latency_ms: float, k: float, a0: float) -> dict[str, float]:
    """accuracy in [0, 1]; the frontier is in percent, as published."""
    if mean_latency_ms <= 0:
        raise OdmlError("mean latency must be positive for the frontier score")
    frontier = k * math.log(mean_latency_ms) + a0
    return {"k": k, "a0": a0, "frontier_pct": frontier, "score": accuracy * 100 - frontier}
