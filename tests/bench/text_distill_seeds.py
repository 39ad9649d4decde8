"""Issue 6, part 3, with the noise measured: the smallest pQRNN student on the
SMS Spam Collection trained with and without the teacher, over several seeds
of the student's initialisation and batch order (the data split stays the
one the teacher was trained on: seed 0 of `odml train`).

    python tests/bench/text_distill_seeds.py --teacher runs/bench_text/pqrnn.keras --seeds 0,1,2 --epochs 6 \
        --variants no_teacher,distilled,mixup,dropout

Variants: ``no_teacher`` (labels alone), ``distilled`` (the default recipe),
``mixup``, ``dropout`` and ``ngram`` (distilled, and on a perturbed copy of
each batch the teacher's soft labels: recipe distill.augment).

``inherited``: distilled, the student starting from the teacher's most
important channels (recipe distill.init teacher); ``inherited_only``: those
channels, then the labels alone (alpha 0).

A development split that the teacher has not seen either: write the training
messages of the seed-0 split to a TSV (``--write-train-tsv PATH``; odml's
loader splits them 80/20 again), train a teacher on it (`odml train pqrnn
--data PATH --epochs 10 --out DEV_TEACHER`) and pass both as ``--data`` and
``--teacher``.

``--alpha`` and ``--temperature`` set the recipe's distill.alpha and
distill.temperature (for the distilled variants).

``--distortion 0.25`` trains on texts distorted afresh every epoch (recipe
text_distortion; the teacher labels the same distorted texts).

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
    ap.add_argument("--variants", default="no_teacher,distilled")
    ap.add_argument("--out", default="runs/bench_text/distill_seeds")
    ap.add_argument("--baseline", default=None,
                    help="an earlier report.json whose no_teacher runs (same student, epochs, seeds) to compare "
                         "against instead of training them again (they do not depend on the teacher)")
    ap.add_argument("--alpha", type=float, default=None, help="recipe distill.alpha (default: the recipe's)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="recipe distill.temperature (default: the recipe's)")
    ap.add_argument("--distortion", type=float, default=None,
                    help="recipe text_distortion (default: the recipe's); 0 trains on the texts as they are")
    ap.add_argument("--write-train-tsv", default=None, metavar="PATH",
                    help="write the training messages of --data's seed-0 split to PATH (label, tab, text) and stop")
    a = ap.parse_args()
    if a.write_train_tsv:
        from odml.data.text import load_text

        d = load_text(a.data)
        Path(a.write_train_tsv).parent.mkdir(parents=True, exist_ok=True)
        Path(a.write_train_tsv).write_text("".join(f"{d.classes[int(y)]}\t{t}\n" for t, y in zip(d.texts_train, d.y_train)),
                                           encoding="utf-8")
        print(f"{a.write_train_tsv}: {len(d.texts_train)} training messages")
        return
    root = Path(a.out)
    how = {"no_teacher": (False, None), "distilled": (None, None), "mixup": (None, "mixup"),
           "dropout": (None, "dropout"), "ngram": (None, "ngram"), "inherited": (None, None),
           "inherited_only": (None, None)}
    names = a.variants.split(",")
    rows: dict[str, list[dict]] = {name: [] for name in names}
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.baseline and "no_teacher" not in names:
        old = json.loads(Path(a.baseline).read_text())
        same = (old["student"], old["epochs"], old.get("text_distortion") or 0.0) == \
            (a.student, a.epochs, a.distortion or 0.0)
        base_rows = [r for r in old["runs"]["no_teacher"] if r["seed"] in seeds]
        if not same or [r["seed"] for r in base_rows] != seeds:
            raise SystemExit(f"--baseline {a.baseline}: not the same student, epochs, distortion and seeds")
        rows = {"no_teacher": base_rows, **rows}
    for seed in seeds:
        for name in names:
            distill, augment = how[name]
            t0 = time.perf_counter()
            p = prepare(CompressOptions(teacher=a.teacher, data=a.data, out=str(root / f"{name}_s{seed}"),
                                        epochs=a.epochs, runs=10, students=[a.student], distill=distill,
                                        augment=augment, init="teacher" if name.startswith("inherited") else None))
            if name == "inherited_only":  # the teacher's channels, then the labels alone
                p.recipe.distill.alpha = 0.0
            p.recipe.seed = seed  # after the split is made: only initialisation, batch order and distortion change
            if a.distortion is not None:
                p.recipe.text_distortion = a.distortion
            if a.alpha is not None and name != "inherited_only":
                p.recipe.distill.alpha = a.alpha
            if a.temperature is not None:
                p.recipe.distill.temperature = a.temperature
            rep = run(p)
            s = rep["students"][0]
            row = {"seed": seed, "accuracy": s["accuracy"], "int8_accuracy": s["int8_accuracy"], "auc": s["auc"],
                   "params": s["params"], "size_ratio": s["size_ratio"], "wall_s": round(time.perf_counter() - t0)}
            rows[name].append(row)
            print(name, json.dumps(row), f"teacher {rep['teacher']['accuracy']:.4f}", flush=True)
    summary = {name: {k: round(float(np.mean([r[k] for r in rs])), 4) for k in ("accuracy", "int8_accuracy", "auc")}
               for name, rs in rows.items()}
    base = rows.get("no_teacher")
    wins = {name: f"{sum(d['accuracy'] > n['accuracy'] for d, n in zip(rs, base))}/{len(rs)} "
                  f"(ties {sum(d['accuracy'] == n['accuracy'] for d, n in zip(rs, base))})"
            for name, rs in rows.items() if base and name != "no_teacher"}
    report = {"teacher": a.teacher, "student": a.student, "epochs": a.epochs, "text_distortion": a.distortion or 0.0,
              "alpha": p.recipe.distill.alpha, "temperature": p.recipe.distill.temperature,
              "baseline": a.baseline, "runs": rows, "mean": summary,
              "wins_over_no_teacher": wins}
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({"mean": summary, "wins_over_no_teacher": wins}, indent=1))


if __name__ == "__main__":
    main()
