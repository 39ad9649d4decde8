"""Stands in for TFLite's / LiteRT's benchmark_model binary in the adb tests:
the same flags, real LiteRT timings on this host, and output in
benchmark_model's formats: the count and timing lines, the delegate
summaries (XNNPACK on the CPU; the GPU delegate's "not supported" list and
"Replacing N out of M node(s)" line; NNAPI's "refused" lines), and with
op profiling the Run Order and node-type tables. The tests copy it with a
shebang to the test's Python.

What the stand-in phone has comes from its environment (set by
tests/adb_standin.py): ODML_STANDIN_GPU / ODML_STANDIN_NPU are "none" (the
phone lacks it: benchmark_model says so and runs on the CPU, as the real
tool does), "all", or a comma list of op types the delegate refuses;
ODML_STANDIN_SYS and ODML_STANDIN_HEAT: each run warms the phone's
thermal zones by HEAT millidegrees."""

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def _heat() -> None:
    root, heat = os.environ.get("ODML_STANDIN_SYS"), int(os.environ.get("ODML_STANDIN_HEAT", "0"))
    if not root or not heat:
        return
    for t in Path(root, "class", "thermal").glob("thermal_zone*/temp"):
        t.write_text(str(int(t.read_text().strip()) + heat) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graph", required=True)
    ap.add_argument("--num_threads", type=int, default=1)
    ap.add_argument("--num_runs", type=int, default=50)
    ap.add_argument("--warmup_runs", type=int, default=1)
    ap.add_argument("--min_secs", type=float, default=1.0)
    ap.add_argument("--use_xnnpack", default="true")
    ap.add_argument("--use_gpu", default="false")
    ap.add_argument("--use_nnapi", default="false")
    ap.add_argument("--use_npu", default="false")
    ap.add_argument("--dispatch_library_path", default="")
    ap.add_argument("--enable_op_profiling", default="false")
    ap.add_argument("--use_profiler", default="false")
    a = ap.parse_args()
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{a.graph}]")
    t0 = time.perf_counter()
    resolver = OpResolverType.AUTO if a.use_xnnpack == "true" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=a.graph, num_threads=a.num_threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    shapes = {t["index"]: t["shape"] for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]
    kinds = [o["op_name"] for o in ops]

    def offered(env: str, default: str, name: str, created: str) -> tuple[str | None, set]:
        """The phone's delegate for an accelerator: none (benchmark_model says so, runs on the CPU), or
        its name and the op types it refuses."""
        have = os.environ.get(env, default)
        if have == "none":
            print(f"WARNING: {created} acceleration is unsupported on this platform.")
            return None, set()
        print(f"INFO: Created TensorFlow Lite delegate for {created}.")
        return name, (set() if have == "all" else set(have.split(",")))

    delegate, refused = None, set()
    if a.use_gpu == "true":
        delegate, refused = offered("ODML_STANDIN_GPU", "all", "TfLiteGpuDelegateV2", "GPU")
        if refused & set(kinds):
            print("ERROR: Following operations are not supported by GPU delegate:")
            for k in sorted(refused & set(kinds)):
                print(f"{k}: Operation is not supported.")
            off = sum(k in refused for k in kinds)
            print(f"{len(kinds) - off} operations will run on the GPU, and the remaining {off} operation(s) "
                  "will run on the CPU.")
    elif a.use_npu == "true" or a.use_nnapi == "true":
        delegate, refused = offered("ODML_STANDIN_NPU", "none", "TfLiteNnapiDelegate", "NNAPI")
        for k in sorted(refused & set(kinds)):
            print(f"WARNING: Operator {k} (v1) refused by NNAPI delegate: Unsupported operation type.")
    elif a.use_xnnpack == "true":
        delegate = "TfLiteXNNPackDelegate"
        print("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    if delegate:
        on = sum(k not in refused for k in kinds)
        parts = 1 + sum(1 for i in range(1, len(kinds)) if (kinds[i] in refused) != (kinds[i - 1] in refused))
        print(f"INFO: Replacing {on} out of {len(kinds)} node(s) with delegate ({delegate}) node, yielding "
              f"{parts} partitions for the whole graph.")
        if delegate == "TfLiteGpuDelegateV2":
            how = "completely" if not refused & set(kinds) else "partially"
            print(f"INFO: Explicitly applied GPU delegate, and the model graph will be {how} executed by the "
                  "delegate w/ 1 delegate kernels.")
    init_us = (time.perf_counter() - t0) * 1e6
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))

    def timed(n, min_secs):
        ts, start = [], time.perf_counter()
        while len(ts) < n or time.perf_counter() - start < min_secs:
            t = time.perf_counter()
            it.invoke()
            ts.append((time.perf_counter() - t) * 1e6)
        return ts

    def line(ts, pct):
        s = (f"count={len(ts)} first={ts[0]:.0f} curr={ts[-1]:.0f} min={min(ts):.0f} max={max(ts):.0f} "
             f"avg={np.mean(ts):.0f} std={np.std(ts):.0f}")
        if pct:
            s += f" p5={np.percentile(ts, 5):.0f} median={np.median(ts):.0f} p95={np.percentile(ts, 95):.0f}"
        return "INFO: " + s

    warm = timed(a.warmup_runs, 0)
    print(f"INFO: Running benchmark for at least {a.warmup_runs} iterations and at least 0.5 seconds")
    print(line(warm, False))
    runs = timed(a.num_runs, a.min_secs)
    _heat()
    print(f"INFO: Running benchmark for at least {a.num_runs} iterations and at least {a.min_secs} seconds")
    print(line(runs, True))
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
          f"Warmup (avg): {np.mean(warm):.0f}, Inference (avg): {np.mean(runs):.0f}")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=5 overall=11.2695")
    if "true" in (a.enable_op_profiling, a.use_profiler):
        total = float(np.mean(runs)) / 1e3
        sizes = [max(1, sum(int(np.prod(shapes[i])) for i in o["outputs"])) for o in ops]
        share = [s / sum(sizes) for s in sizes]
        rows = []  # (node type, avg ms, name)
        if delegate and delegate != "TfLiteXNNPackDelegate":
            on = [i for i, k in enumerate(kinds) if k not in refused]
            rows.append((delegate, total * sum(share[i] for i in on), f"[{names[ops[on[-1]]['outputs'][0]]}]:"
                                                                      f"{len(ops)}"))
            rows += [(kinds[i], total * share[i], f"[{names[ops[i]['outputs'][0]]}]:{i}")
                     for i in range(len(ops)) if kinds[i] in refused]
        else:  # XNNPACK's per-operator profiling: one row per op of the graph
            rows += [(kinds[i], total * share[i], f"[{';'.join(names[t] for t in ops[i]['outputs'])}]:{i}")
                     for i in range(len(ops))]
        print("Operator-wise Profiling Info for Regular Benchmark Runs:")
        print("============================== Run Order ==============================")
        print("\t             [node type]\t  [first]\t  [avg ms]\t      [%]\t    [cdf%]\t  [mem KB]\t"
              "[times called]\t[Name]")
        cdf = 0.0
        for kind, ms, name in rows:
            pct = 100.0 * ms / total if total else 0.0
            cdf += pct
            print(f"\t{kind:>24}\t{ms:>9.3f}\t{ms:>10.3f}\t{pct:>8.3f}%\t{cdf:>8.3f}%\t{0:>10.3f}\t{1:>14}\t{name}")
        print("")
        counts = Counter(k for k, _, _ in rows)
        by_kind = Counter()
        for k, ms, _ in rows:
            by_kind[k] += ms
        print("============================== Summary by node type ==============================")
        print("\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]")
        cdf = 0.0
        for op, ms in by_kind.most_common():
            pct = 100.0 * ms / total if total else 0.0
            cdf += pct
            print(f"\t{op:>24}\t{counts[op]:>9}\t{ms:>10.3f}\t{pct:>10.3f}%\t{cdf:>10.3f}%\t"
                  f"{0:>10.3f}\t{counts[op]:>14}")
        print("")
        # the summary benchmark_model ends its profile with: counts that are not the timed runs
        print(f"Timings (microseconds): count={len(runs) * 3} first=9 curr=9 min=1 max=99 avg=33 std=20")
        print("Memory (bytes): count=0")
        print(f"{len(rows)} nodes observed")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
