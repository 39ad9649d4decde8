"""Rewards of hardware-aware NAS (MnasNet: Tan et al., CVPR 2019; TuNAS:
Bender et al., "Can weight sharing outperform random architecture search?",
CVPR 2020).

With r = latency / target and Q = accuracy:
- mnas (MnasNet, soft constraint): Q * r^w, w = -0.07 by default;
- mnas_hard: Q * min(r^w, 1) (no bonus for beating the target);
- abs (TuNAS): Q + beta * |r - 1|, beta = -0.10 by default.
"""

from __future__ import annotations

from odml.errors import SpecError

REWARDS = ("mnas", "mnas_hard", "abs")
DEFAULT_EXPONENT = {"mnas": -0.07, "mnas_hard": -0.07, "abs": -0.10}


def check_reward(kind: str, target_ms: float, exponent: float | None) -> float:
    """Validate the reward settings; returns the exponent (w or beta) to use."""
    if kind not in REWARDS:
        raise SpecError(f"--reward {kind!r}: unknown; choose one of {', '.join(REWARDS)}")
    if not target_ms > 0:
        raise SpecError(f"--target-ms {target_ms:g}: the latency target must be greater than 0")
    w = DEFAULT_EXPONENT[kind] if exponent is None else float(exponent)
    if w > 0:
        raise SpecError(f"--exponent {w:g}: must be 0 or negative (a positive value rewards slower models)")
    return w


def reward(kind: str, accuracy: float, latency_ms: float, target_ms: float, exponent: float) -> float:
    r = latency_ms / target_ms
    if kind == "mnas":
        return accuracy * r ** exponent
    if kind == "mnas_hard":
        return accuracy * min(r ** exponent, 1.0)
    if kind == "abs":
        return accuracy + exponent * abs(r - 1.0)
    raise SpecError(f"unknown reward {kind!r}")
