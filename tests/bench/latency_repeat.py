"""How well each latency statistic repeats: N architectures drawn from a
space, exported as the search exports them, each measured ROUNDS times,
interleaved, with the calibration's settings; per statistic (median of the
instance medians, fastest run, 10th and 25th percentiles, fastest instance
median), the mean deviation from the architecture's own median over the
rounds and the share of measurements more than 5% and 10% away.

    .venv/bin/python tests/bench/latency_repeat.py [--space small32] [--precision int8] [--models 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="small32")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    from odml.devices.device import parse_device
    from odml.devices.host import HostOptions, _measure
    from odml.nas.latency import LatencyMeter
    from odml.nas.predictor import _space, sample_spec

    sp = _space(a.space, None)
    rng = random.Random(5)
    meter = LatencyMeter(parse_device("host", None, compile=True), a.precision)
    with tempfile.TemporaryDirectory() as d:
        paths = []
        while len(paths) < a.models:
            spec = sample_spec(sp, rng, 10)
            if spec is not None:
                paths.append(Path(d) / f"m{len(paths)}.tflite")
                paths[-1].write_bytes(meter.export(spec))
        opts = HostOptions(threads=1, runs=30, min_secs=0.2, warmup=1)
        res: dict[Path, list[dict[str, float]]] = {p: [] for p in paths}
        for _ in range(a.rounds):
            for p in paths:
                r = _measure(str(p), opts)
                t = np.asarray(r["samples_ms"])
                res[p].append({"median": r["median_ms"], "min": r["min_ms"], "p10": float(np.percentile(t, 10)),
                               "p25": float(np.percentile(t, 25)), "fastest instance": min(r["instance_medians_ms"])})
    print(f"{a.models} {a.space} models at {a.precision}, {a.rounds} rounds each, interleaved")
    for stat in res[paths[0]][0]:
        dev = np.concatenate([np.abs(v / np.median(v) - 1) for v in
                              (np.array([x[stat] for x in rr]) for rr in res.values())])
        print(f"  {stat:>16}: mean deviation {dev.mean():.2%}, over 5%: {(dev > .05).mean():.0%}, "
              f"over 10%: {(dev > .1).mean():.0%}")


if __name__ == "__main__":
    main()
