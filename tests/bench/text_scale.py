"""pQRNN training at the scale of real corpora: a corpus of N labelled lines
built from the SMS Spam Collection (each line a message, or two halves of two
messages of the same class joined, with a quarter of the tokens distorted:
new lines, the same label statistics), then `odml train pqrnn` on it in a
fresh process, for each N: peak resident memory (the process's VmHWM) and
training throughput (sentences per second over the epochs).

    python tests/bench/text_scale.py --sizes 10000,50000,200000 --epochs 1 --out runs/bench_scale

Prints one line per size and writes report.json."""

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


if __name__ == "__main__":
    main()
