"""The corpus of real ONNX graphs (tests/pretrained.py) through odml's
preparation and onnx2tf (zoo/onnx_prep.py): per graph its exporter, node
count before and after preparation, conversion wall time, the onnx2tf
settings that worked, the batch the model takes, and parity against
onnxruntime on 2 inputs (the worst output's mean absolute error over the
spread of onnxruntime's, the measure tests/test_onnx_prep.py holds under
1e-3).

    python tests/bench/onnx_corpus.py [--keys ocr_cls,ocr_det] [--simplifier onnxslim|onnxsim|none]

--simplifier swaps the simplifier (onnxsim must be installed by hand) or
leaves it out, to compare. Prints a Markdown table; a graph that does not
convert gets its one-line error in the table."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    from odml.errors import OdmlError
    from odml.zoo import onnx_prep
    from pretrained import MODELS, fetch
    from test_onnx_prep import CORPUS, inputs, relative_errors

    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default=",".join(CORPUS))
    ap.add_argument("--simplifier", default="onnxslim", choices=["onnxslim", "onnxsim", "none"])
    a = ap.parse_args()
    if a.simplifier == "onnxsim":
        import onnxsim

        onnx_prep._simplifiers = lambda: [("onnxsim", lambda g: onnxsim.simplify(g)[0])]
    elif a.simplifier == "none":
        onnx_prep._simplifiers = lambda: []  # noqa: PIE807
    print(f"simplifier: {a.simplifier}\n")
    print("| graph | made by | producer recorded | input size | ops | ops prepared | convert s | attempts | settings | batch | "
          "parity (worst rel. err) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in a.keys.split(","):
        src = fetch(key)
        t0 = time.perf_counter()
        try:
            om = onnx_prep.OnnxModel(src, CORPUS[key])
        except OdmlError as e:
            print(f"| {key} | {MODELS[key].exporter} | | {CORPUS[key]} | | | {time.perf_counter() - t0:.1f} | | "
                  f"fails: {str(e).split(': ', 1)[-1]} | | |", flush=True)
            continue
        i = om.info
        err = max(relative_errors(om, inputs(key, om.hwc)))
        settings = ", ".join(f"{k}={v}" for k, v in i["settings"].items()) or "defaults"
        batch = "any" if i["batch"] is None else i["batch"]
        print(f"| {key} | {MODELS[key].exporter} | {i['exporter']} | {CORPUS[key]} | {i['ops']} | {i['ops_prepared']} | {i['convert_s']:.1f} | "
              f"{i['attempts']} | {settings} | {batch} | {err:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
