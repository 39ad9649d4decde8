"""pQRNN training at the scale of real corpora: a corpus of N labelled lines
built from the SMS Spam Collection (each line a message, or two halves of two
messages of the same class joined, with a quarter of the tokens distorted:
new lines, the same label statistics), then `odml train pqrnn` on it in a
fresh process, for each N: peak resident memory (the process's VmHWM) and
training throughput (sentences per second over the epochs).

    python tests/bench/text_scale.py --sizes 10000,50000,200000 --epochs 1 --out runs/bench_scale

Prints one line per size, then (in this process, after the training runs)
the featurization throughput alone (distortion + projection, batch by batch
as the trainer does), the model's multiply-adds per sentence (forward, and
forward + backward taken as 3x forward) and the float32 matmul rate
TensorFlow reaches on this CPU, so that the training throughput reads as a
fraction of the CPU's peak; writes report.json."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

SMS = Path(__file__).resolve().parents[3] / "shared" / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def build_corpus(path: Path, n: int, seed: int = 0) -> None:
    """``n`` labelled lines made from the SMS messages (see the module's docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2].parent))
    from odml.data.projection import distort

    rows = [ln.split("\t", 1) for ln in SMS.read_text(encoding="utf-8").splitlines() if "\t" in ln]
    by = {}
    for label, text in rows:
        by.setdefault(label, []).append(text.split())
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            label, toks = rows[rng.randrange(len(rows))][0], None
            a = rng.choice(by[label])
            if rng.random() < 0.5:
                b = rng.choice(by[label])
                toks = a[: max(1, len(a) // 2)] + b[len(b) // 2:]
            else:
                toks = a
            f.write(f"{label}\t{distort(' '.join(toks), rng, 0.25)}\n")


def train(corpus: Path, out: Path, epochs: int, extra: list[str]) -> dict:
    """`odml train pqrnn` in a child process; its peak memory from
    /proc/<pid>/status (VmHWM), polled until it ends."""
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", "train", "pqrnn", "--data", str(corpus),
           "--epochs", str(epochs), "--out", str(out), "--json", *extra]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while p.poll() is None:
        try:
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
    stdout, stderr = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"odml train failed on {corpus}: {stderr.strip()[-400:]}")
    res = json.loads(stdout)["train"]
    return {"peak_rss_mb": round(peak / 1024, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "train_s": res["train_wall_s"], "train_samples": res["train_samples"],
            # training throughput: the fit of every epoch, XLA's compile included (older trees: no fit_s)
            "sentences_per_s": res.get("sentences_per_s") or round(res["train_samples"] * epochs / res["train_wall_s"], 1),
            "xla": res.get("xla"),
            "val_accuracy": res["val_accuracy"], "val_auc": res["val_auc"]}


def featurize_rate(corpus: Path, n: int = 20000) -> float:
    """Texts per second of the training input pipeline alone: one epoch's
    distortion and projection of ``n`` lines, batch by batch."""
    from odml.data.text import FeaturizedText, load_text
    from odml.train.text import TextTrainConfig
    from odml.zoo.card import ModelCard
    from odml.zoo.registry import create_config, family_for

    ds = load_text(corpus)
    cfg = create_config("pqrnn")
    fam = family_for(cfg)
    card = ModelCard(fam, cfg, "pqrnn", list(ds.classes), None)
    texts = ds.texts_train[:n]
    f = FeaturizedText(texts, ds.y_train[:n], [], ds.y_train[:0], list(ds.classes), ds.source, [],
                       fam.featurizer(card), cfg.max_len, ds.split)
    t0 = time.perf_counter()
    for _ in f.batches("train", TextTrainConfig.batch_size, 0, 0, True, TextTrainConfig.distortion):
        pass
    return len(texts) / (time.perf_counter() - t0)


def matmul_peak() -> float:
    """GMAC/s of a float32 (2048 x 2048) @ (2048 x 2048) matmul in TensorFlow
    (the CPU's practical peak for the dense algebra a training step is made of)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    a = tf.random.uniform((2048, 2048))
    f = tf.function(lambda x: tf.matmul(x, x))
    f(a).numpy()
    t0 = time.perf_counter()
    for _ in range(10):
        f(a).numpy()
    return 10 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000,200000")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--out", default="runs/bench_scale")
    ap.add_argument("--train-args", default="", help="more options for odml train, e.g. '--batch-size 256'")
    a = ap.parse_args()
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    report = {"epochs": a.epochs, "train_args": a.train_args, "sizes": {}}
    for n in (int(s) for s in a.sizes.split(",")):
        corpus = root / f"corpus_{n}.tsv"
        if not corpus.is_file():
            build_corpus(corpus, n)
        r = train(corpus, root / f"pqrnn_{n}.keras", a.epochs, a.train_args.split())
        report["sizes"][n] = r
        print(f"{n:>7} lines: peak RSS {r['peak_rss_mb']:8.1f} MB, {r['sentences_per_s']:7.1f} sentences/s "
              f"(train {r['train_s']:.0f} s of {r['wall_s']:.0f} s), val accuracy {r['val_accuracy']:.4f} "
              f"AUC {r['val_auc']:.4f}", flush=True)
        (root / "report.json").write_text(json.dumps(report, indent=2))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2].parent))
    from odml.zoo.registry import create_config

    largest = max(report["sizes"])
    feat = featurize_rate(root / f"corpus_{largest}.tsv")
    fwd = create_config("pqrnn").macs
    peak = matmul_peak()
    best = max(r["sentences_per_s"] for r in report["sizes"].values())
    frac = best * 3 * fwd / 1e9 / peak
    report.update({"featurize_texts_per_s": round(feat, 1), "macs_forward": fwd, "macs_train_step": 3 * fwd,
                   "matmul_gmac_s": round(peak, 1), "fraction_of_peak": round(frac, 3)})
    print(f"featurization alone (distortion + projection): {feat:,.0f} texts/s")
    print(f"multiply-adds per sentence: {fwd / 1e6:.1f} M forward, {3 * fwd / 1e6:.1f} M forward + backward; "
          f"matmul peak {peak:.1f} GMAC/s; training at {best:.0f} sentences/s = {best * 3 * fwd / 1e9:.1f} GMAC/s "
          f"= {100 * frac:.0f}% of it")
    (root / "report.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
