"""Acceptance benchmark of `odml compress` (issue 6) on the embedded digits.

    python tests/bench/compress_digits.py [--epochs 15] [--out runs/bench_compress]

1. A teacher: MobileNetEdgeTPUV2-Tiny (width 1.0) at 32x32, trained --teacher-epochs.
2. One run, three students derived at 1/2, 1/4 and 1/8 of the teacher's MACs,
   distilled, int8 (PTQ): sizes (int8 bytes against the teacher's fp32 bytes),
   accuracy lost, latency.
3. The same students without the teacher, same epochs: distilled vs not.
4. One student alone, same epochs: the wall time of three students in one
   run against one.
5. 50% magnitude pruning of the 1/2 student: gzip size against the unpruned
   student (int8 and fp32 files), accuracy kept.
6. The chains (issue 25): 50% pruning (unstructured, 2:4) with QAT against
   pruning then PTQ: float, QAT int8 and PTQ int8 accuracy, sizes.
7. Shared students (issues 25 and 44, ``--shared``): ``--only shared`` runs
   this part alone. The same three sizes as widths of one network, per seed
   (``--seeds``): the whole run against one student's run (the widest
   alone) and against the students trained separately, and each student's
   int8 accuracy against the same student trained separately for the same
   epochs and for about the shared run's training time; the sandwich rule
   (three widths per step, the design before issue 44) on the first seed.
Prints the figures and writes report.json. The same flow for text waits for
the text models (issue 7).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    from odml.data.images import load_images
    from odml.train.trainer import TrainConfig, train_classifier
    from odml.zoo import create_spec

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--teacher-epochs", type=int, default=15)
    ap.add_argument("--out", default="runs/bench_compress")
    ap.add_argument("--only", choices=("all", "shared"), default="all")
    ap.add_argument("--seeds", default="0,1,2", help="--only shared: the seeds")
    ap.add_argument("--teacher", help="--only shared: this teacher instead of the one trained here (the demo's: "
                    "runs/demo/model.keras)")
    ap.add_argument("--sizes", default="0.5,0.25,0.125", help="--only shared: the students' sizes (the demo: 0.5,0.25)")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    teacher = Path(a.teacher) if a.teacher else root / "teacher.keras"
    if not teacher.is_file():
        spec = create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32)
        res = train_classifier(spec, load_images("digits", (32, 32), 3, 0.2, 0), TrainConfig(epochs=a.teacher_epochs),
                               teacher)
        print(f"teacher trained: val accuracy {res['val_accuracy']:.4f} in {res['train_wall_s']:.0f} s", flush=True)

    if a.only == "shared":
        report = shared_figures(teacher, "digits", a.epochs, root, _arg, [int(x) for x in a.seeds.split(",")],
                                sandwich=not a.teacher, sizes=[float(x) for x in a.sizes.split(",")])
        (root / "shared_report.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report, indent=2))
        return
    report = compress_figures(teacher, "digits", a.epochs, root, _arg)
    report["text"] = "measured by tests/bench/text_sms.py (the SMS Spam Collection, a pQRNN teacher)"
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    shutil.copy(root / "students" / "compress.png", root / "students.png")


def compress_figures(teacher: Path, data: str, epochs: int, root: Path, arg_of) -> dict:
    """One run of three students derived at 1/2, 1/4, 1/8 of the teacher's MACs,
    the same students without the teacher, one student alone, and 50% pruning
    of the largest (int8 and fp32). ``arg_of`` turns a student label back into
    a --students argument."""
    from odml.compress.run import CompressOptions, prepare, run

    def go(name: str, **kw):
        out = root / name
        t0 = time.perf_counter()
        rep = run(prepare(CompressOptions(teacher=str(teacher), data=data, out=str(out), epochs=epochs, runs=100, **kw)))
        print(f"run {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        return rep

    main_run = go("students", sizes=[0.5, 0.25, 0.125])
    labels = [s["label"] for s in sorted(main_run["students"], key=lambda s: -s["params"])]
    plain = go("students_no_teacher", students=[arg_of(l) for l in labels], distill=False)
    one = go("one_student", students=[arg_of(labels[0])])
    half = arg_of(labels[0])
    pruned = go("pruned", students=[half], prune=0.5)
    fp32 = go("unpruned_fp32", students=[half], quantize="none")
    fp32_pruned = go("pruned_fp32", students=[half], quantize="none", prune=0.5)
    chains = {"pruned_qat": go("pruned_qat", students=[half], prune=0.5, quantize="qat"),
              "pruned_2of4_qat": go("pruned_2of4_qat", students=[half], prune=0.5, prune_structure="2:4",
                                    quantize="qat"),
              "pruned_2of4_ptq": go("pruned_2of4_ptq", students=[half], prune=0.5, prune_structure="2:4")}

    t = main_run["teacher"]
    by = {s["label"]: s for s in main_run["students"]}
    nd = {s["label"]: s for s in plain["students"]}
    rows = []
    for lbl in labels:
        s = by[lbl]
        rows.append({"student": lbl, "params": s["params"], "int8_bytes": s["size_bytes"], "size_ratio": s["size_ratio"],
                     "accuracy": s["accuracy"], "int8_accuracy": s["int8_accuracy"],
                     "points_lost": round(100 * (t["accuracy"] - s["int8_accuracy"]), 2),
                     "latency_ms": s["latency_ms"], "speedup": s["speedup"],
                     "no_teacher_accuracy": nd[lbl]["accuracy"], "no_teacher_int8_accuracy": nd[lbl]["int8_accuracy"]})
    smallest = rows[-1]
    three_s, one_s = main_run["students"][0]["train_s"], one["students"][0]["train_s"]
    p8, u8 = pruned["students"][0], by[labels[0]]
    p32, u32 = fp32_pruned["students"][0], fp32["students"][0]
    report = {
        "teacher": {"accuracy": t["accuracy"], "fp32_bytes": t["size_bytes"], "params": t["params"],
                    "latency_ms": t["latency_ms"]},
        "epochs": epochs, "students": rows,
        "smallest": {"size_ratio": smallest["size_ratio"], "points_lost": smallest["points_lost"],
                     "ok": smallest["size_ratio"] >= 4 and smallest["points_lost"] <= 3},
        "distilled_beats_plain": {r["student"]: r["accuracy"] > r["no_teacher_accuracy"] for r in rows},
        "wall": {"three_students_s": round(three_s, 1), "one_student_s": round(one_s, 1),
                 "ratio": round(three_s / one_s, 2), "step_vs_one_student": main_run["phases"].get("vs_one_student"),
                 "phases": main_run["phases"]},
        # Learn2Compress's chain: pruning with QAT against pruning then PTQ (issue 25)
        "chains": {name: {k: r["students"][0].get(k) for k in (
            "accuracy", "int8_accuracy", "float_accuracy", "ptq_int8_accuracy", "sparsity", "size_bytes",
            "gzip_bytes", "latency_ms")} for name, r in [("pruned_ptq", pruned), *chains.items()]},
        "pruning": {"sparsity": p8["sparsity"], "int8_gzip_ratio": round(p8["gzip_bytes"] / u8["gzip_bytes"], 3),
                    "fp32_gzip_ratio": round(p32["gzip_bytes"] / u32["gzip_bytes"], 3),
                    "accuracy_kept_int8": round(p8["int8_accuracy"] / u8["int8_accuracy"], 4),
                    "accuracy_kept_fp32": round(p32["accuracy"] / u32["accuracy"], 4)},
    }
    if "auc" in t:
        report["teacher"]["auc"] = t["auc"]
        for r in rows:
            r["auc"], r["int8_auc"] = by[r["student"]]["auc"], by[r["student"]]["int8_auc"]
            r["no_teacher_auc"] = nd[r["student"]]["auc"]
    return report


def shared_figures(teacher: Path, data: str, epochs: int, root: Path, arg_of, seeds=(0, 1, 2),
                   sandwich: bool = True, sizes=(0.5, 0.25, 0.125)) -> dict:
    """Issue 44: three students at 1/2, 1/4, 1/8 of the teacher's MACs as
    shared widths (one width per step in one graph, the default) against one
    student's run (the widest alone) and against the same students trained
    separately, first for the same epochs, then for about the shared run's
    training time; per seed, whole runs timed as a user waits for them
    (preparation, teacher, training, export, measurement). ``sandwich``: also
    the sandwich rule (three widths per step, each its own graph) on the
    first seed, the design the default replaced."""
    from odml.compress.run import CompressOptions, prepare, run

    def go(name: str, seed: int, epochs: int = epochs, recipe: dict | None = None, **kw):
        out = root / f"seed{seed}" / name
        shutil.rmtree(out, ignore_errors=True)
        rfile = root / f"seed{seed}" / f"{name}.json"
        rfile.parent.mkdir(parents=True, exist_ok=True)
        rfile.write_text(json.dumps({"seed": seed, **(recipe or {})}))
        t0 = time.perf_counter()
        rep = run(prepare(CompressOptions(teacher=str(teacher), data=data, out=str(out), epochs=epochs, runs=100,
                                          recipe=str(rfile), **kw)))
        rep["whole_s"] = round(time.perf_counter() - t0, 2)
        print(f"seed {seed} run {name}: {rep['whole_s']:.0f} s", flush=True)
        return rep

    def acc(rep):
        return {s["label"]: s["int8_accuracy"] for s in rep["students"]}

    sizes = list(sizes)
    from odml.compress.students import load_teacher

    load_teacher(teacher)  # TensorFlow imported and warm before the first timed run, as for the later ones
    per_seed = []
    for seed in seeds:
        shared = go("shared", seed, sizes=sizes, shared=True)
        labels = [s["label"] for s in sorted(shared["students"], key=lambda s: -s["params"])]
        one = go("one_student", seed, students=[arg_of(labels[0])])
        separate = go("separate", seed, sizes=sizes)
        train_s = lambda rep: rep["phases"]["training_s"]  # noqa: E731
        e_eq = max(1, round(epochs * train_s(shared) / train_s(separate)))
        equal = separate if e_eq == epochs else go(f"separate_{e_eq}_epochs", seed, epochs=e_eq, sizes=sizes)
        a_sh, a_sep, a_eq = acc(shared), acc(separate), acc(equal)
        per_seed.append({
            "seed": seed, "equal_wall_epochs": e_eq,
            "whole_s": {"one_student": one["whole_s"], "shared": shared["whole_s"], "separate": separate["whole_s"],
                        f"separate_{e_eq}_epochs": equal["whole_s"]},
            "shared_vs_one_student_run": round(shared["whole_s"] / one["whole_s"], 3),
            "separate_vs_one_student_run": round(separate["whole_s"] / one["whole_s"], 3),
            "phases": {"shared": shared["phases"], "one_student": one["phases"], "separate": separate["phases"]},
            "students": [{"student": lbl, "line": next(s["line"] for s in shared["students"] if s["label"] == lbl),
                          "shared_int8_accuracy": a_sh[lbl], "one_student_int8_accuracy":
                              acc(one).get(lbl) if lbl == labels[0] else None,
                          "separate_int8_accuracy": a_sep[lbl], "equal_wall_separate_int8_accuracy": a_eq[lbl]}
                         for lbl in labels]})
    ratios = [r["shared_vs_one_student_run"] for r in per_seed]
    out = {"epochs": epochs, "seeds": list(seeds), "per_seed": per_seed,
           "shared_vs_one_student_run": {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)},
           "goal": "whole shared run <= 1.3x one student's run; each shared student within 1 point of the same "
                   "student trained separately for the same wall time"}
    gaps = {}
    for i in range(len(sizes)):
        d = [100 * (r["students"][i]["shared_int8_accuracy"] - r["students"][i]["equal_wall_separate_int8_accuracy"])
             for r in per_seed]
        gaps[per_seed[0]["students"][i]["student"]] = {"points_mean": round(float(np.mean(d)), 2),
                                                      "points_min": round(min(d), 2), "points_max": round(max(d), 2)}
    out["shared_minus_equal_wall_separate"] = gaps
    if sandwich:
        sw = go("shared_sandwich", seeds[0], sizes=sizes, shared=True,
                recipe={"shared": {"enabled": True, "widths_per_step": 3, "finetune_epochs": 1}})
        out["sandwich_seed0"] = {"whole_s": sw["whole_s"], "phases": sw["phases"], "int8_accuracy": acc(sw)}
    return out


def _arg(label: str) -> str:
    # "v2_tiny_w0.367" -> "mobilenet_edgetpu_v2_tiny@0.367"
    name, _, width = label.rpartition("_w")
    return f"mobilenet_edgetpu_{name}@{width}"


if __name__ == "__main__":
    main()
