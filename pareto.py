"""The Pareto front of accuracy (higher is better) against latency (lower is
better), and its plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


def pareto_front(points: Sequence[dict[str, Any]], acc: str = "accuracy", lat: str = "latency_ms") -> list[dict[str, Any]]:
    """The points no other point dominates (at least as accurate and at least as
    fast, better in one), sorted by latency."""
    pts = sorted(points, key=lambda p: (p[lat], -p[acc]))
    front: list[dict[str, Any]] = []
    best = float("-inf")
    for p in pts:
        if p[acc] > best:
            front.append(p)
            best = p[acc]
    return front


def plot_front(points: Sequence[dict[str, Any]], front: Sequence[dict[str, Any]], path: Path, title: str,
               target_ms: float | None = None, baselines: Sequence[dict[str, Any]] = (),
               acc: str = "accuracy", lat: str = "latency_ms") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([p[lat] for p in points], [p[acc] for p in points], s=14, c="#9aa7b8", label="trials")
    ax.plot([p[lat] for p in front], [p[acc] for p in front], "o-", c="#d1495b", ms=5, label="Pareto front")
    for b in baselines:
        ax.scatter([b[lat]], [b[acc]], marker="s", s=36, c="#2e86ab")
        ax.annotate(b.get("name", ""), (b[lat], b[acc]), fontsize=7, xytext=(4, -8), textcoords="offset points")
    if target_ms:
        ax.axvline(target_ms, ls="--", c="#555555", lw=1, label=f"target {target_ms:g} ms")
    ax.set_xlabel("latency (ms, median)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    from odml.files import atomic_output

    with atomic_output(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
