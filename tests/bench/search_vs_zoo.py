"""Acceptance benchmark of `odml search` (issue 5).

On the embedded digits (32x32, fixed-seed split), with a host latency target:
1. the zoo baselines (MobileNetEdgeTPUV2 tiny..l and v1, scaled to 32x32 and
   10 classes) are measured (int8, one thread) and trained with the proxy
   budget, through the same evaluator the search uses;
2. each strategy searches the small32 space for --minutes;
3. the searched best is compared with the best baseline by reward.

    python tests/bench/search_vs_zoo.py --minutes 12 --strategies evolution,random,bayesian,hyperband

Prints one table and writes runs/bench_search/report.json. The target
defaults to the median latency of the fastest baseline, so that the zoo is
judged at its own best operating point.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from odml.nas.latency import LatencyMeter  # noqa: E402
from odml.nas.runner import Evaluator, SearchConfig, finish, prepare, run_search  # noqa: E402
from odml.zoo.registry import create_spec, list_models  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--strategies", default="evolution")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--target-ms", type=float, default=None)
    ap.add_argument("--reward", default="mnas")
    ap.add_argument("--out", default="runs/bench_search")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)

    # 1. baselines, through the evaluator of the search (same meter, same proxy training)
    base_cfg = SearchConfig(space="small32", target_ms=a.target_ms or 1.0, epochs=a.epochs, reward=a.reward,
                            reject_factor=1e9)
    bp = prepare(base_cfg, root / "baselines", role="worker")
    bp.out.mkdir(exist_ok=True)
    meter = LatencyMeter(bp.device, "int8", 1, 30, 0.3, root / "baselines" / "latency_cache.jsonl")
    ev = Evaluator(bp, meter)
    t0 = time.perf_counter()
    baselines = []
    for name in list_models("mobilenet_edgetpu*"):
        spec = create_spec(name, num_classes=10, input_size=32)
        m = ev.evaluate(spec, a.epochs, [], name)
        baselines.append({"name": name.replace("mobilenet_edgetpu_", ""), "accuracy": m["accuracy"],
                          "latency_ms": m["latency_ms"], "params": spec.params, "macs": spec.macs,
                          "wall_s": m["wall_s"]})
        print(f"baseline {name}: acc {m['accuracy']:.4f} latency {m['latency_ms']:.3f} ms "
              f"params {spec.params:,} ({m['wall_s']:.0f} s)", flush=True)
    base_wall = time.perf_counter() - t0
    target = a.target_ms or min(b["latency_ms"] for b in baselines)
    from odml.nas.reward import DEFAULT_EXPONENT, reward

    w = DEFAULT_EXPONENT[a.reward]
    for b in baselines:
        b["reward"] = reward(a.reward, b["accuracy"], b["latency_ms"], target, w)
    best_base = max(baselines, key=lambda b: b["reward"])
    print(f"target {target:.3f} ms; best baseline {best_base['name']} reward {best_base['reward']:.4f}", flush=True)

    # 2. the strategies
    results = []
    for strat in a.strategies.split(","):
        cfg = SearchConfig(space="small32", target_ms=target, reward=a.reward, strategy=strat, trials=1000,
                           epochs=a.epochs, max_minutes=a.minutes)
        p = prepare(cfg, root / f"search_{strat}")
        t1 = time.perf_counter()
        run_search(p)
        wall = time.perf_counter() - t1
        s = finish(p, baselines)
        best = s["best"]
        results.append({"strategy": strat, "trials": s["trials"], "wall_s": round(wall, 1), "best": best,
                        "beats_zoo": best["reward"] > best_base["reward"]})
        print(f"{strat}: {s['trials']} trials in {wall / 60:.1f} min; best reward {best['reward']:.4f} "
              f"acc {best['accuracy']:.4f} latency {best['latency_ms']:.3f} ms params {best['params']:,}", flush=True)

    winner = max(results, key=lambda r: r["best"]["reward"])
    report = {"target_ms": target, "reward": a.reward, "epochs": a.epochs, "minutes_per_strategy": a.minutes,
              "baselines": baselines, "baseline_wall_s": round(base_wall, 1), "best_baseline": best_base,
              "strategies": results, "winner": winner["strategy"]}
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print()
    print(f"{'model':<34}{'reward':>8}{'acc':>8}{'ms':>8}{'params':>11}")
    for b in baselines:
        print(f"zoo {b['name']:<30}{b['reward']:>8.4f}{b['accuracy']:>8.4f}{b['latency_ms']:>8.3f}{b['params']:>11,}")
    for r in results:
        b = r["best"]
        print(f"search {r['strategy']} ({r['trials']} trials){'':<{max(0, 14 - len(r['strategy']))}}"
              f"{b['reward']:>8.4f}{b['accuracy']:>8.4f}{b['latency_ms']:>8.3f}{b['params']:>11,}")
    print(f"winner: {winner['strategy']}; beats the best zoo baseline ({best_base['name']}): {winner['beats_zoo']}")


if __name__ == "__main__":
    main()
