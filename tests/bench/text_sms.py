"""Acceptance benchmark of the text models (issue 7) and of `odml compress` on
text (issue 6, part 3), on the SMS Spam Collection (../shared/data), with the
fixed-seed stratified 80/20 split that `odml train` uses:

1. TF-IDF (word 1-2-grams, sublinear tf) + logistic regression (scikit-learn),
   trained on the same split: ROC AUC and accuracy;
2. pQRNN (default configuration) trained --epochs through `odml train`'s code,
   exported to int8 TFLite (builtin ops only) with `odml export`'s code:
   AUC and accuracy float and int8 on the whole validation split (LiteRT),
   parameters, file size, host latency per message (invoke, 1 thread) and the
   projection's cost per message;
3. MobileBERT-EdgeTPU-XS int8 at sequence length 128: host latency (1 thread);
4. --compress: the pQRNN as teacher of three students (1/2, 1/4, 1/8 of its
   MACs), distilled vs not, one student alone, 50% pruning.

    python tests/bench/text_sms.py --epochs 10 [--compress --compress-epochs 6]

Prints the figures and writes runs/bench_text/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMS = Path(__file__).resolve().parents[3] / "shared" / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def tfidf_baseline(data) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    t0 = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    xtr = vec.fit_transform(data.texts_train)
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(xtr, data.y_train)
    p = clf.predict_proba(vec.transform(data.texts_val))[:, 1]
    return {"auc": float(roc_auc_score(data.y_val, p)), "accuracy": float(((p > 0.5) == data.y_val).mean()),
            "features": int(xtr.shape[1]), "fit_s": round(time.perf_counter() - t0, 2)}


def main() -> None:
    import numpy as np

    from odml.data.text import load_text
    from odml.devices.host import HostOptions, bench_host
    from odml.litert import load_interpreter, run_batch
    from odml.exporters.export import ExportOptions, load_source, run_export
    from odml.numeric import classification_scores as scores
    from odml.train.text import TextTrainConfig, train_text
    from odml.zoo import create_config
    from odml.zoo.card import ModelCard

    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data", default=str(SMS))
    ap.add_argument("--out", default="runs/bench_text")
    ap.add_argument("--compress", action="store_true")
    ap.add_argument("--compress-epochs", type=int, default=6)
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    data = load_text(a.data)
    print(f"data: {len(data.texts_train)} train / {len(data.texts_val)} val messages, classes {data.classes}", flush=True)
    report: dict = {"data": a.data, "train": len(data.texts_train), "val": len(data.texts_val)}

    base = tfidf_baseline(data)
    report["tfidf_lr"] = base
    print(f"TF-IDF + LR: AUC {base['auc']:.4f} accuracy {base['accuracy']:.4f}", flush=True)

    model = root / "pqrnn.keras"
    if not model.is_file():
        res = train_text("pqrnn", create_config("pqrnn"), data, TextTrainConfig(epochs=a.epochs), model)
        (root / "pqrnn_train.json").write_text(json.dumps(res, indent=2))
    res = json.loads((root / "pqrnn_train.json").read_text())
    print(f"pQRNN trained {a.epochs} epochs in {res['train_wall_s']:.0f} s: float AUC {res['val_auc']:.4f}", flush=True)
    card = ModelCard.load(model)
    featurize = card.family.featurizer(card)
    x_val, cut_val = featurize(data.texts_val)
    x_tr, _ = featurize(data.texts_train)
    src = load_source(str(model))
    exp = root / "pqrnn_export"
    if not (exp / "export.json").is_file():
        run_export(src, ExportOptions(precisions=["fp32", "int8"], out_dir=exp, parity_samples=200), x_val, data.y_val,
                   x_tr)
    float_sc = scores(src.predict(x_val), data.y_val)
    tfl = exp / "pqrnn_int8.tflite"
    int8_sc = scores(run_batch(load_interpreter(tfl), x_val), data.y_val)
    lat = bench_host(tfl, HostOptions(threads=1, runs=200, min_secs=2.0))
    t0 = time.perf_counter()
    for _ in range(3):
        featurize(data.texts_val)
    proj_ms = (time.perf_counter() - t0) / 3 / len(data.texts_val) * 1e3
    report["pqrnn"] = {
        "config": res["config"], "params": res["params"], "epochs": a.epochs, "train_wall_s": res["train_wall_s"],
        "float": float_sc, "int8": int8_sc, "int8_bytes": tfl.stat().st_size,
        "fp32_bytes": (exp / "pqrnn_fp32.tflite").stat().st_size, "truncated_val": cut_val,
        "int8_latency_ms": {"median": lat["median_ms"], "p90": lat["p90_ms"], "runs": lat["count"]},
        "projection_ms_per_message": round(proj_ms, 4),
        "int8_auc_minus_baseline": round(int8_sc["auc"] - base["auc"], 4),
        "meets_baseline_minus_0.005": int8_sc["auc"] >= base["auc"] - 0.005,
    }
    print(f"pQRNN float AUC {float_sc['auc']:.4f} acc {float_sc['accuracy']:.4f}; int8 AUC {int8_sc['auc']:.4f} "
          f"acc {int8_sc['accuracy']:.4f}; {res['params']:,} params; int8 {tfl.stat().st_size:,} bytes; "
          f"host {lat['median_ms']:.3f} ms/message (+ projection {proj_ms:.3f} ms)", flush=True)

    # MobileBERT-EdgeTPU-XS, int8 at 128 tokens (untrained: latency and size only)
    xs_dir = root / "mobilebert_xs"
    xs = xs_dir / "mobilebert_edgetpu_xs_int8.tflite"
    if not xs.is_file():
        s = load_source("mobilebert_edgetpu_xs", input_size="128")
        from odml.exporters.tflite import ParityThreshold

        loose = {"int8": ParityThreshold(0.0, 10.0)}  # untrained: its outputs mean nothing, only latency counts
        rep = run_export(s, ExportOptions(precisions=["int8"], out_dir=xs_dir, calibration="random",
                                          calibration_samples=50, parity_samples=20, thresholds=loose, metadata=None),
                         warn=lambda m: None)
        assert rep["ok"], rep
    lat = bench_host(xs, HostOptions(threads=1, runs=50, min_secs=5.0))
    report["mobilebert_edgetpu_xs_int8_seq128"] = {"bytes": xs.stat().st_size, "median_ms": lat["median_ms"],
                                                   "p90_ms": lat["p90_ms"], "runs": lat["count"]}
    print(f"MobileBERT-EdgeTPU-XS int8 @128: {xs.stat().st_size:,} bytes, host median {lat['median_ms']:.1f} ms "
          f"(1 thread)", flush=True)

    if a.compress:
        sys.path.insert(0, str(Path(__file__).parent))
        from compress_digits import compress_figures

        def arg_of(label: str) -> str:  # "pqrnn_w0.453" -> "pqrnn@0.453"
            name, _, width = label.rpartition("_w")
            return f"{name}@{width}"

        report["compress"] = compress_figures(model, a.data, a.compress_epochs, root / "compress", arg_of)
    (root / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
