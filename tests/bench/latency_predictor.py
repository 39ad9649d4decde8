"""The latency predictor on the host: calibration time and accuracy on
held-out architectures for small32 and edgetpu_v2 at int8 and fp32, then the
same search run for the same wall time with measured and with hybrid
latency (candidates considered, trained, best reward, and how far the
winner's predicted latency is from its measured one).

    .venv/bin/python tests/bench/latency_predictor.py [--out runs/bench_predictor]
        [--small-minutes 10] [--v2-minutes 6] [--search-minutes 6] [--target-ms 0.05]

Every step is a CLI command (printed), so each figure can be reproduced
alone; a rerun resumes the calibrations (their run folders are kept).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def odml(*args: str) -> dict:
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", *args, "--json"]
    print("$ odml " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    d = json.loads(p.stdout)
    d["_wall_s"] = time.perf_counter() - t0
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/bench_predictor")
    ap.add_argument("--small-minutes", type=float, default=10.0)
    ap.add_argument("--v2-minutes", type=float, default=6.0)
    ap.add_argument("--search-minutes", type=float, default=6.0)
    ap.add_argument("--target-ms", type=float, default=0.05)
    ap.add_argument("--skip-search", action="store_true")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for space, minutes in (("small32", a.small_minutes), ("edgetpu_v2", a.v2_minutes)):
        for prec in ("int8", "fp32"):
            if not minutes:
                continue
            r = odml("calibrate", "--space", space, "--precision", prec, "--minutes", f"{minutes:g}",
                     "--out", str(out / f"cal_{space}_{prec}"))["calibrate"]
            acc = r["accuracy"]
            rows.append({"space": space, "precision": prec, "minutes": minutes, **acc, "units": r["units"],
                         "models_fit": r["models_fit"], "calibration_s": r["calibration_s"],
                         "unit_cv": r.get("unit_cv")})
            print(f"  {space} {prec}: {r['calibration_s'] / 60:.1f} min, {r['units']} blocks, {r['models_fit']} "
                  f"models fitted, {acc['models']} held out: {acc['within_5pct']:.0%} within 5%, "
                  f"{acc['within_10pct']:.0%} within 10%, RMSE {acc['rmse_ms']:.4f} ms, mean error "
                  f"{acc['mape']:.1%}", flush=True)
    (out / "calibration.json").write_text(json.dumps(rows, indent=1))
    if a.skip_search:
        return
    pred = out / "cal_small32_int8" / "predictor.json"
    res = {}
    for mode in ("measured", "hybrid"):
        folder = out / f"search_{mode}"
        args = ["search", "--space", "small32", "--target-ms", f"{a.target_ms:g}", "--trials", "100000",
                "--epochs", "1", "--max-minutes", f"{a.search_minutes:g}", "--latency", mode, "--out", str(folder)]
        if mode == "hybrid":
            args += ["--predictor", str(pred)]
        s = odml(*args)["search"]
        recs = [json.loads(line) for line in (folder / "trials.jsonl").read_text().splitlines() if line.strip()]
        best = s["best"]
        err = None
        if best.get("latency_predicted_ms") and best["latency_source"] == "measured":
            err = best["latency_predicted_ms"] / best["latency_ms"] - 1
        res[mode] = {"considered": s["considered"], "trials": len(recs), "trained": s["trained"], "measured": s["measured"],
                     "best_reward": best["reward"], "best_accuracy": best["accuracy"],
                     "best_latency_ms": best["latency_ms"], "best_predicted_ms": best.get("latency_predicted_ms"),
                     "winner_prediction_error": err, "wall_s": s["trial_wall_s"]}
        print(f"  {mode}: {s['considered']} candidates considered ({len(recs)} trials), {s['trained']} trained, best reward "
              f"{best['reward']:.4f} (accuracy {best['accuracy']:.4f}, {best['latency_ms']:.4f} ms measured"
              + (f", {best['latency_predicted_ms']:.4f} predicted: {err:+.1%}" if err is not None else "") + ")",
              flush=True)
    m, h = res["measured"], res["hybrid"]
    print(f"hybrid / measured: {h['considered'] / max(1, m['considered']):.1f}x the candidates considered, "
          f"{h['trained'] / max(1, m['trained']):.1f}x trained, best reward {h['best_reward']:.4f} vs "
          f"{m['best_reward']:.4f}")
    (out / "search.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
