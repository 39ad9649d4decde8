"""Stands in for TFLite's benchmark_model binary in the adb tests: the same
flags, real LiteRT timings on this host, and output in benchmark_model's
format. The tests copy it with a shebang to the test's Python."""

import argparse
import sys
import time
from collections import Counter

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graph", required=True)
    ap.add_argument("--num_threads", type=int, default=1)
    ap.add_argument("--num_runs", type=int, default=50)
    ap.add_argument("--warmup_runs", type=int, default=1)
    ap.add_argument("--min_secs", type=float, default=1.0)
    ap.add_argument("--use_xnnpack", default="true")
    ap.add_argument("--enable_op_profiling", default="false")
    a = ap.parse_args()
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{a.graph}]")
    t0 = time.perf_counter()
    resolver = OpResolverType.AUTO if a.use_xnnpack == "true" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=a.graph, num_threads=a.num_threads, experimental_op_resolver_type=resolver)
    it.allocate_tensors()
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
    print(f"INFO: Running benchmark for at least {a.num_runs} iterations and at least {a.min_secs} seconds")
    print(line(runs, True))
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
          f"Warmup (avg): {np.mean(warm):.0f}, Inference (avg): {np.mean(runs):.0f}")
    print("INFO: Memory footprint delta from the start of the tool (MB): init=5 overall=11.2695")
    if a.enable_op_profiling == "true":
        ops = Counter(d["op_name"] for d in it._get_ops_details())
        total = float(np.mean(runs)) / 1e3
        print("============================== Summary by node type ==============================")
        print("\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]")
        cdf = 0.0
        for op, n in ops.most_common():
            share = 100.0 * n / sum(ops.values())
            cdf += share
            print(f"\t{op:>24}\t{n:>9}\t{total * share / 100:>10.3f}\t{share:>10.3f}%\t{cdf:>10.3f}%\t"
                  f"{0:>10.3f}\t{n:>14}")
        print("")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
