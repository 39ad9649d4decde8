"""Issue 42's ranking benchmark: how well each zero-cost proxy, #params and
MACs, and the accuracy predictor rank architectures by the accuracy they
reach when trained.

For each space (small32 and the scaled edgetpu_v2 at --input-size), --archs
random architectures are drawn (seeded), their proxies computed on one
batch of the data (timed), and each is trained with the search's proxy
budget (--epochs on --data, the search's own training) and scored on the
validation split. Then:

- each proxy's Kendall tau against the trained accuracy (the aggregates
  az_nas and vote ranked over all the architectures);
- the predictor's: 5-fold cross-validation of the search's Gaussian process
  (nas/screen.py: the architecture's choices, size and proxies as features),
  each fold predicted by a model fitted on the other four, the tau over the
  pooled predictions; and the same with --fit architectures only (what a
  search has when it starts screening), averaged over 20 random subsets.

    python tests/bench/proxy_ranking.py --spaces small32,edgetpu_v2 --archs 50 --data shapes:3000 \\
        --input-size 64 --epochs 2

Each architecture's result goes to OUT/<space>.jsonl as it finishes: rerun
to resume. Run it from a copy of the tree (TF re-reads source while tracing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from odml.data.images import to_float
    from odml.files import append_jsonl, read_jsonl
    from odml.nas import proxies
    from odml.nas.config import SearchConfig, load_data
    from odml.nas.screen import AccuracyPredictor, features
    from odml.nas.space import space_for_input
    from odml.train import proxy_train
    from odml.train.trainer import TrainConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--spaces", default="small32,edgetpu_v2")
    ap.add_argument("--archs", type=int, default=50)
    ap.add_argument("--data", default="shapes:3000")
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fit", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_proxy_ranking")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    report = {"settings": vars(a), "spaces": {}}
    for name in a.spaces.split(","):
        sp = space_for_input(name, a.input_size)
        data = load_data(SearchConfig(space=name, data=a.data, input_size=a.input_size), sp)
        x = to_float(data.x_train[:proxies.BATCH])
        log = root / f"{name}.jsonl"
        done = read_jsonl(log)
        for i, (v, spec) in enumerate(sp.draw_values(a.archs, a.seed, data.num_classes)):
            if i < len(done):
                continue
            t0 = time.perf_counter()
            px = proxies.compute(spec, x, a.seed)
            t_px = time.perf_counter() - t0
            res = proxy_train(spec, data, TrainConfig(epochs=a.epochs, batch_size=64, learning_rate=3e-3, seed=a.seed))
            rec = {"i": i, "values": v, "line": spec.to_line(), "params": spec.params, "macs": spec.macs,
                   "proxies": px, "proxy_s": round(t_px, 2), "accuracy": float(res["score"]),
                   "train_s": float(res["train_wall_s"])}
            append_jsonl(log, rec)
            done.append(rec)
            print(f"{name} {i + 1}/{a.archs}: accuracy {rec['accuracy']:.3f}, {spec.macs / 1e6:.1f}M MACs, "
                  f"proxies {t_px:.1f} s, training {rec['train_s']:.0f} s", flush=True)
        acc = [r["accuracy"] for r in done]
        rows = [r["proxies"] for r in done]
        taus = {p: proxies.kendall_tau(proxies.scores(rows, p), acc) for p in proxies.NAMES}
        for label, with_px in (("predictor", True), ("predictor, no proxies", False)):
            feats = [features(sp, r["values"], sp.decode(r["values"], data.num_classes),
                              r["proxies"] if with_px else None) for r in done]
            order = np.random.default_rng(a.seed).permutation(len(done))
            pred = np.zeros(len(done))
            for k in range(5):
                test = order[k::5]
                train = np.setdiff1d(order, test)
                m = AccuracyPredictor(a.seed).fit([feats[j] for j in train], [acc[j] for j in train])
                pred[test] = m.predict([feats[j] for j in test])[0]
            taus[f"{label} (5-fold)"] = proxies.kendall_tau(list(pred), acc)
            few = []
            for rep in range(20):
                idx = np.random.default_rng(100 + rep).permutation(len(done))
                fit, rest = idx[:a.fit], idx[a.fit:]
                m = AccuracyPredictor(a.seed).fit([feats[j] for j in fit], [acc[j] for j in fit])
                few.append(proxies.kendall_tau(list(m.predict([feats[j] for j in rest])[0]), [acc[j] for j in rest]))
            few = [t for t in few if t is not None]
            taus[f"{label} ({a.fit} fitted)"] = round(statistics.mean(few), 4) if few else None
        report["spaces"][name] = {
            "archs": len(done), "scale": sp.scale, "accuracy": [min(acc), statistics.median(acc), max(acc)],
            "proxy_s_median": statistics.median(r["proxy_s"] for r in done),
            "train_s_median": statistics.median(r["train_s"] for r in done), "kendall_tau": taus}
        print(f"\n{name} ({len(done)} architectures; accuracy {min(acc):.3f} / {statistics.median(acc):.3f} / "
              f"{max(acc):.3f}; proxies {report['spaces'][name]['proxy_s_median']:.1f} s, training "
              f"{report['spaces'][name]['train_s_median']:.0f} s per architecture)")
        for p, t in sorted(taus.items(), key=lambda kv: -(kv[1] if kv[1] is not None else -9)):
            print(f"  {p:<24}{'-' if t is None else f'{t:+.3f}':>8}")
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\nreport: {root / 'report.json'}")


if __name__ == "__main__":
    main()
