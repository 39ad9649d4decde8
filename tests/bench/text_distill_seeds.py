"""Issue 6, part 3, with the noise measured: the smallest pQRNN student on the
SMS Spam Collection trained with and without the teacher, over several seeds
of the student's initialisation and batch order (the data split stays the
one the teacher was trained on: seed 0 of `odml train`).

    python tests/bench/text_distill_seeds.py --teacher runs/bench_text/pqrnn.keras --seeds 0,1,2 --epochs 6

The teacher comes from `python tests/bench/text_sms.py` (or `odml train pqrnn
--data SMS --out ...`). Prints accuracy and AUC per seed and their means;
writes runs/bench_text/distill_seeds/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMS = Path(__file__).resolve().parents[3] / "shared" / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def main() -> None:
    import numpy as np

    from odml.compress.run import CompressOptions, prepare, run

    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="runs/bench_text/pqrnn.keras")
    ap.add_argument("--data", default=str(SMS))
    ap.add_argument("--student", default="pqrnn@0.318")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default="runs/bench_text/distill_seeds")
    a = ap.parse_args()
    root = Path(a.out)
    rows: dict[str, list[dict]] = {"distilled": [], "no_teacher": []}
    for seed in (int(s) for s in a.seeds.split(",")):
        for name, distill in (("distilled", None), ("no_teacher", False)):
            t0 = time.perf_counter()
            p = prepare(CompressOptions(teacher=a.teacher, data=a.data, out=str(root / f"{name}_s{seed}"),
                                        epochs=a.epochs, runs=10, students=[a.student], distill=distill))
            p.recipe.seed = seed  # after the split is made: only initialisation and batch order change
            rep = run(p)
            s = rep["students"][0]
            row = {"seed": seed, "accuracy": s["accuracy"], "int8_accuracy": s["int8_accuracy"], "auc": s["auc"],
                   "params": s["params"], "size_ratio": s["size_ratio"], "wall_s": round(time.perf_counter() - t0)}
            rows[name].append(row)
            print(name, json.dumps(row), f"teacher {rep['teacher']['accuracy']:.4f}", flush=True)
    summary = {name: {k: round(float(np.mean([r[k] for r in rs])), 4) for k in ("accuracy", "int8_accuracy", "auc")}
               for name, rs in rows.items()}
    wins = sum(d["accuracy"] > n["accuracy"] for d, n in zip(rows["distilled"], rows["no_teacher"]))
    report = {"runs": rows, "mean": summary, "distilled_wins": f"{wins}/{len(rows['distilled'])}"}
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"mean": summary, "distilled_wins": report["distilled_wins"]}, indent=1))


if __name__ == "__main__":
    main()
