"""The long fuzzing run (issue 26): mutants of every input kind odml reads
(tests/fuzzing.py says how each is made and judged), for N minutes.

    python tests/bench/fuzz.py --minutes 30 [--seed 1] [--kinds tflite,keras] [--save runs/fuzz]

Prints the cases tried and the outcomes per kind (ok: a result; error: a
one-line OdmlError; bug: any other exception; crash: the process died;
hang: no answer in a minute), and
every finding with the input saved under --save/findings as NAME.KIND:
once fixed, copy it to tests/fuzz_regressions/, which the tests replay.
Exit 1 when there is a finding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import fuzzing

    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--cases", type=int, default=10 ** 9)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default=",".join(fuzzing.KINDS))
    ap.add_argument("--save", default="runs/fuzz")
    a = ap.parse_args()
    kinds = [k for k in a.kinds.split(",") if k]
    bad = [k for k in kinds if k not in fuzzing.KINDS]
    if bad:
        print(f"error: --kinds: unknown {', '.join(bad)}; known: {', '.join(fuzzing.KINDS)}", file=sys.stderr)
        return 2
    save = Path(a.save)
    t0 = time.time()
    res = fuzzing.fuzz(kinds, a.seed, a.cases, a.minutes * 60, save / "work", save / "findings")
    res["minutes"] = round((time.time() - t0) / 60, 1)
    res["seed"] = a.seed
    print(f"{res['cases']} cases in {res['minutes']} min (seed {a.seed})")
    for k, c in res["counts"].items():
        print(f"  {k:7s} {sum(c.values()):6d} cases: {c['ok']} ok, {c['error']} one-line errors, "
              f"{c['bug']} bugs, {c['crash']} crashes, {c['hang']} hangs")
    for f in res["findings"]:
        print(f"FINDING {f['outcome']} {f['kind']} case {f['case']}: {f['input']}\n{f['detail']}")
    (save / "report.json").write_text(json.dumps(res, indent=2))
    return 1 if res["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
