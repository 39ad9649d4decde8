"""odml bench: latency of .tflite models where they will run. Never imports
TensorFlow."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from odml.cli.common import err, fmt_macs, handle_errors, out, print_json


@handle_errors
def bench_cmd(
    models: Optional[List[Path]] = typer.Argument(None, help="One or more .tflite files, or model files to convert to fp32 first (.keras, .h5, .onnx, a SavedModel folder); or give --budget."),
    device: Optional[str] = typer.Option(None, "--device", help="Where to run, comma-separated: host (the default), adb:SERIAL (adb:SERIAL:gpu names its accelerator), edgetpu[:usb|pci:N]; see 'odml devices'."),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="Where on the device, comma-separated: cpu, gpu, npu (phones: benchmark_model's GPU delegate, NNAPI or LiteRT's NPU dispatch); one row per device and accelerator, with what ran on the delegate."),
    threads: int = typer.Option(1, "--threads", help="Interpreter threads."),
    xnnpack: bool = typer.Option(True, "--xnnpack/--no-xnnpack", help="Use the XNNPACK delegate."),
    runtime: str = typer.Option("interpreter", "--runtime", help="host: interpreter (LiteRT's Interpreter) or compiled (CompiledModel, the API LiteRT recommends for apps)."),
    blocks: bool = typer.Option(False, "--blocks", help="Where the time goes: every block of the model (odml models and search results: the spec in its card) exported alone at the file's precision and measured on the device."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Warm-up runs (not timed)."),
    runs: int = typer.Option(50, "--runs", help="Timed runs (at least)."),
    min_secs: float = typer.Option(1.0, "--min-secs", min=0.0, help="Keep running until this much time has passed."),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="Pin to these cores, e.g. '0' or '0,1'."),
    data: Optional[str] = typer.Option(None, "--data", help="Classify the validation split of this dataset ('digits', 'shapes', a folder, an .npz; a .tsv/.csv of texts for a text model): accuracy (and ROC AUC for texts) and per-input latency."),
    ovic: bool = typer.Option(False, "--ovic", help="Score by the OVIC 2018 rule (needs --data; one thread)."),
    ovic_limit_ms: float = typer.Option(33.0, "--ovic-limit-ms", help="OVIC per-image time limit."),
    frontier_k: Optional[float] = typer.Option(None, "--frontier-k", help="OVIC frontier a(t) = k ln t + a0: k."),
    frontier_a0: Optional[float] = typer.Option(None, "--frontier-a0", help="OVIC frontier: a0 (percent)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the validation split."),
    split: str = typer.Option("val", "--split", help="With --data: score its validation split (val, 20%% stratified by --seed) or all of it (all: your own test set)."),
    input_size: Optional[str] = typer.Option(None, "--input-size", help="A model file's input size HxW, when the file leaves it open."),
    input_range: Optional[str] = typer.Option(None, "--input-range", help="A model file's input range: 0,1, -1,1 or 0,255."),
    task: Optional[str] = typer.Option(None, "--task", help="A model file's outputs: classify, segment, detect, keypoints, sequence or features."),
    benchmark_binary: Optional[Path] = typer.Option(None, "--benchmark-binary", help="adb: TFLite's benchmark_model for the phone (or $ODML_BENCHMARK_BINARY)."),
    core_mask: Optional[str] = typer.Option(None, "--core-mask", help="adb: taskset CPU mask of the big cores, e.g. f0."),
    op_profile: bool = typer.Option(False, "--op-profile", help="Per-op profile mapped to layers and to the blocks of the model's spec: on phones benchmark_model's, on the host each op timed alone."),
    npu_libraries: Optional[Path] = typer.Option(None, "--npu-libraries", help="adb, npu: a folder of the vendor's LiteRT dispatch libraries (libLiteRtDispatch_*.so), pushed beside benchmark_model."),
    timeout: float = typer.Option(600.0, "--timeout", min=1.0, help="Give up on one model's benchmark after this many seconds."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Draw the latency distributions to this .png."),
    budget: Optional[Path] = typer.Option(None, "--budget", help="Budget file (TOML, or a pyproject.toml with [tool.odml.budgets]): exit 1 when a budget is exceeded."),
    junit: Optional[Path] = typer.Option(None, "--junit", help="With --budget: write JUnit XML, one test case per check."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write this folder: bench.json (what was measured, every timed run) and report.html, its page (with --budget: the verdict at the top, and the JUnit file points to it)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure latency: count, mean, median, p90, p99, std, CV, min, max, init
    time, first inference and peak memory, for every MODEL."""
    from odml.devices.device import BenchOptions, parse_devices
    from odml.devices.host import BenchError

    from odml.devices.device import parse_accelerators

    accelerators = parse_accelerators(accelerator)
    if report is not None:
        from odml.devices.run_page import check_folder

        check_folder(report)
    if budget is not None:
        return _budgets(budget, junit, json_out, device, accelerators, benchmark_binary, report)
    if junit is not None:
        raise BenchError("--junit goes with --budget")
    if not models:
        raise BenchError("give one or more .tflite files, or --budget FILE")
    cpu_list: list[int] = []
    if cpus:
        try:
            cpu_list = [int(c) for c in cpus.split(",") if c.strip()]
        except ValueError:
            raise BenchError(f"--cpus {cpus!r}: expected core numbers such as 0 or 0,1") from None
    if ovic and data is None:
        raise BenchError("--ovic needs --data (the images to classify)")
    if (frontier_k is None) != (frontier_a0 is None):
        raise BenchError("the OVIC frontier needs both --frontier-k and --frontier-a0")
    if ovic and threads != 1:
        err.print("warning: OVIC runs on one thread; --threads ignored for the score", markup=False)
    opts = BenchOptions(threads=threads, runs=runs, warmup=warmup, min_secs=min_secs, xnnpack=xnnpack, cpus=cpu_list,
                        timeout_s=timeout, core_mask=core_mask, op_profile=op_profile, runtime=runtime,
                        npu_libraries=str(npu_libraries) if npu_libraries else None)
    from odml.devices.host import RUNTIMES

    if runtime not in RUNTIMES:
        raise BenchError(f"--runtime {runtime!r}: choose interpreter or compiled")
    specs = _block_specs(models) if blocks else {}
    if plot is not None and plot.suffix.lower() != ".png":
        raise BenchError(f"--plot {plot}: expected a .png file")
    if plot is not None and not plot.parent.is_dir():
        raise BenchError(f"--plot {plot}: output folder {plot.parent} does not exist")
    if split not in ("val", "all"):
        raise BenchError(f"--split {split!r}: expected val or all")
    devices = parse_devices(device or "host", str(benchmark_binary) if benchmark_binary else None)
    plan = [(dev, acc) for dev in devices for acc in dev.accelerators_for(accelerators)]
    for dev in devices:
        dev.say = lambda m: err.print(m, markup=False)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="odml-bench-") as tmp:
        files = []
        for m in models:  # model files that are not .tflite yet: an fp32 .tflite of each, benchmarked in their place
            if m.suffix.lower() == ".tflite":
                files.append((m, m))
                continue
            from odml.exporters.export import to_fp32_tflite
            from odml.zoo.families.external import parse_range

            with err.status(f"converting {m} to an fp32 .tflite"):
                files.append((m, to_fp32_tflite(m, Path(tmp) / f"{m.stem}_fp32.tflite", input_size,
                                                parse_range(input_range), task)))
        results = _bench_all(files, plan, opts, data, ovic, ovic_limit_ms, frontier_k, frontier_a0, seed, split)
        if blocks:
            _add_blocks(results, files, plan, opts, specs)
    if plot is not None:
        _plot(results, plot)
    page = None
    if report is not None:
        from odml.devices import run_page

        page = run_page.write(report, {"about": f"{threads} thread(s), {runtime}, XNNPACK {'on' if xnnpack else 'off'}",
                                       "results": results})
    for r in results:
        r.pop("samples_ms", None)
    if json_out:
        print_json({"bench": results, **({"page": str(page)} if page else {})})
        return
    if page is not None:
        out.print(f"report: {page}", markup=False, highlight=False)
    render_table(results, f"odml bench ({threads} thread(s), {runtime}, XNNPACK {'on' if xnnpack else 'off'})")
    for r in results:
        c = r.get("classification")
        if not c:
            continue
        if "miou" in c:
            line = (f"{Path(r['model']).name} on {c['data']} ({c['split']}): mIoU {c['miou']:.4f}, pixel accuracy "
                    f"{c['accuracy']:.4f} ({c['images']} images), mean per-image latency {c['mean_latency_ms']:.3f} ms")
        elif "texts" in c:
            line = (f"{Path(r['model']).name} on {c['data']} ({c['split']}): accuracy {c['accuracy']:.4f}, "
                    f"ROC AUC {c['auc']:.4f} "
                    f"({c['texts']} texts, {c['truncated']} cut to the model's length), "
                    f"mean per-text latency {c['mean_latency_ms']:.3f} ms")
        else:
            line = (f"{Path(r['model']).name} on {c['data']} ({c['split']}): accuracy {c['accuracy']:.4f} "
                    f"({c['images']} images), mean per-image latency {c['mean_latency_ms']:.3f} ms")
        if c.get("latency_from"):
            line = line.replace(" on ", f" ({r.get('accelerator')}) on ", 1) + \
                f" (latency: {c['latency_from']}; predictions: the host's)"
        if "ovic" in c:
            o = c["ovic"]
            line += (f"; OVIC 2018: {o['within_budget']}/{o['images']} images within the "
                     f"{o['limit_ms']:g} ms x {o['images']} budget, score {o['score']:.4f}")
        if "frontier" in c:
            line += f"; frontier score {c['frontier']['score']:+.2f} points"
        out.print(line, markup=False)


def _bench_all(files, plan, opts, data, ovic, ovic_limit_ms, frontier_k, frontier_a0, seed, split) -> list:
    from dataclasses import replace

    from odml.devices.classify import classify_dataset
    from odml.devices.device import Host
    from odml.devices.op_profile import mapped

    results = []
    for dev, acc in plan:
        with err.status("benchmarking") as status:
            for given, m in files:
                status.update(f"benchmarking {given} on {dev.label} ({acc})")
                res = dev.bench(m, replace(opts, accelerator=acc))
                res.setdefault("accelerator", acc)
                if opts.op_profile:
                    status.update(f"profiling {given} op by op on {dev.label} ({acc})")
                    rows = dev.op_profile(m, replace(opts, accelerator=acc), res)
                    if rows is not None:
                        res["op_breakdown"] = {**{k: v for k, v in rows.items() if k != "ops"},
                                               **mapped(rows["ops"], str(m)),
                                               "bench_ms": res.get("median_ms") or res.get("mean_ms")}
                if given != m:
                    res.update(model=str(given), converted="fp32 .tflite")
                if data is not None and dev.classifies:
                    status.update(f"classifying {data} with {given}")
                    res["classification"] = classify_dataset(m, data, dev, opts, ovic, ovic_limit_ms, frontier_k,
                                                             frontier_a0, seed, split)
                elif data is not None:  # a phone reports a summary: its per-inference figure, the host's predictions
                    status.update(f"classifying {data} with {given} on the host for {dev.label} ({acc})")
                    t = res.get("median_ms") or res.get("mean_ms")
                    res["classification"] = classify_dataset(m, data, Host(), opts, ovic, ovic_limit_ms, frontier_k,
                                                             frontier_a0, seed, split, latency_ms=t,
                                                             latency_from=f"{dev.label} ({acc}), per inference")
                results.append(res)
    return results


def _block_specs(models) -> dict:
    """Each model's spec and precision (from its card), before anything is measured."""
    from odml.nas.units import spec_of

    return {str(m): spec_of(str(m)) for m in models}


def _add_blocks(results, files, plan, opts, specs) -> None:
    from dataclasses import replace

    from odml.nas.units import breakdown

    k = 0
    for dev, acc in plan:  # the results are in the plan's order: device x accelerator, then file
        for given, m in files:
            spec, prec = specs[str(given)]
            with err.status(f"measuring the blocks of {given} on {dev.label} ({acc})"):
                results[k]["blocks"] = breakdown(spec, dev, prec or "fp32", replace(opts, accelerator=acc),
                                                 results[k].get("median_ms") or results[k].get("mean_ms"),
                                                 lower=dev.lowers_grouped)
            k += 1


def _budgets(path: Path, junit: Optional[Path], json_out: bool, device: Optional[str] = None,
             accelerators: Optional[list] = None, benchmark_binary: Optional[Path] = None,
             report: Optional[Path] = None) -> None:
    import time

    from odml.files import write_text_atomic
    from odml.devices.budgets import evaluate, junit_xml, load_budgets
    from odml.errors import CheckFailed, OutputError

    bf = load_budgets(path)
    if junit is not None and not junit.parent.is_dir():
        raise OutputError(f"{junit}: output folder {junit.parent} does not exist")
    t0 = time.perf_counter()
    with err.status("checking budgets") as status:
        checks = evaluate(bf, progress=status.update, device=device, accelerators=accelerators,
                          benchmark_binary=str(benchmark_binary) if benchmark_binary else None)
    failed = [c for c in checks if not c["ok"]]
    page = None
    if report is not None:  # written whatever the verdict: a failed gate shows why
        from odml.devices import run_page

        page = run_page.write(report, {"source": bf.source, "checks": checks, "ok": not failed})
    if junit is not None:
        write_text_atomic(junit, junit_xml(checks, time_s=time.perf_counter() - t0, report=page))
    if json_out:
        print_json({"budgets": {"source": bf.source, "checks": checks, "ok": not failed,
                                **({"page": str(page)} if page else {})}})
    else:
        t = Table(title=f"budgets from {bf.source}")
        for col in ("model", "check", "limit", "measured", "verdict"):
            t.add_column(col, justify="right" if col in ("limit", "measured") else "left")
        for c in checks:
            sign = "<=" if c["bound"] == "max" else ">="
            t.add_row(c["model"], c["check"], f"{sign} {c['limit']:.4g} {c['unit']}".rstrip(),
                      f"{c['measured']:.4g} {c['unit']}".rstrip(), "[green]pass[/]" if c["ok"] else "[red]FAIL[/]")
        out.print(t)
        if page:
            out.print(f"report: {page}", markup=False, highlight=False)
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(checks)} budget checks failed: "
                          + "; ".join(f"{c['model']} {c['check']}" for c in failed))


def _delegated(r) -> str:
    d = r.get("delegation")
    if not d or d.get("share_ops") is None:
        return "-"
    text = f"{d['share_ops']:.0%} ({d['ops_delegated']}/{d['ops_total']})"
    if d.get("share_time") is not None:
        text += f", {d['share_time']:.0%} time"
    return text


def render_table(results, title):
    t = Table(title=title)
    for col in ("model", "device", "accel", "runs", "median ms", "spread", "app ms", "mean ms", "p90 ms", "p99 ms",
                "std ms", "CV", "min ms", "max ms", "init ms", "first ms", "memory MB", "delegated"):
        t.add_column(col, justify="left" if col in ("model", "device", "accel", "delegated") else "right")

    def f(r, k, fmt="{:.3f}"):
        return fmt.format(r[k]) if r.get(k) is not None else "-"

    for r in results:
        mem = r.get("peak_rss_mb", r.get("memory_delta_mb"))
        spread = "-" if r.get("spread") is None else f"{r['spread']:.1%}{'' if r.get('stable', True) else ' !'}"
        t.add_row(Path(r["model"]).name, r["device"], r.get("accelerator") or "-", str(r.get("count") or "-"),
                  f(r, "median_ms"), spread, f(r, "app_ms"), f(r, "mean_ms"),
                  f(r, "p90_ms"), f(r, "p99_ms"), f(r, "std_ms"), f(r, "cv"), f(r, "min_ms"), f(r, "max_ms"),
                  f(r, "init_ms", "{:.1f}"), f(r, "first_ms", "{:.2f}"), "-" if mem is None else f"{mem:.0f}",
                  _delegated(r))
    out.print(t)
    if any(r.get("spread") is not None for r in results):
        out.print("median: of the medians of 3 runtime instances, each warmed up until its median settles; spread: "
                  "how far apart those medians are (! above 10%: the machine was busy or the model is erratic, "
                  "measure again); app ms: with writing the input and reading the outputs", markup=False)
    for r in results:
        where = f"{Path(r['model']).name} on {r['device']} ({r.get('accelerator') or '-'})"
        d = r.get("delegation")
        if d and d.get("delegate"):
            line = (f"{where}: {d['delegate']} took {d['ops_delegated']} of {d['ops_total'] or '?'} ops in "
                    f"{d['partitions']} partition(s)")
            if d["fallback"]:
                line += "; on the CPU: " + ", ".join(f"{x['op']} ({x['reason']})" for x in d["fallback"])
            out.print(line, markup=False)
        if r.get("pinned") == "big cores":
            out.print(f"{where}: pinned to the big cores (taskset {r['core_mask']})", markup=False)
        h = r.get("thermal")
        if h and h["throttle_risk"]:
            err.print(f"warning: {where}: {h['zone']} ({h['type']}) went from {h['before_c']:.1f} to "
                      f"{h['after_c']:.1f} C" + (f" (throttles at {h['trip_c']:.0f} C)" if h["trip_c"] else "")
                      + ": the phone may have throttled; let it cool and measure again", markup=False)
    for r in results:
        b = r.get("blocks")
        if b:
            p = Table(title=f"blocks of {Path(r['model']).name} on {r['device']}, each measured alone")
            for col in ("unit", "block", "MACs", "median ms", "share"):
                p.add_column(col, justify="left" if col in ("unit", "block") else "right")
            for row in b["blocks"]:
                p.add_row(row["unit"], row["what"], fmt_macs(row["macs"]),
                          "-" if row["median_ms"] is None else f"{row['median_ms']:.4f}", f"{row['share']:.1%}")
            out.print(p)
            if b["whole_ms"] is not None:
                out.print(f"sum of blocks {b['sum_ms']:.4f} ms; the whole model {b['whole_ms']:.4f} ms "
                          f"(adds {b['whole_adds_ms']:+.4f} ms)", markup=False)
    for r in results:
        if r.get("op_profile"):
            p = Table(title=f"per-op profile: {Path(r['model']).name} on {r['device']}")
            for col in ("op", "count", "avg ms", "%"):
                p.add_column(col, justify="left" if col == "op" else "right")
            for row in r["op_profile"]:
                p.add_row(row["op"], str(row["count"]), f"{row['avg_ms']:.3f}", f"{row['percent']:.1f}")
            out.print(p)
        ob = r.get("op_breakdown")
        if ob:
            _render_breakdown(r, ob)


def _render_breakdown(r, ob) -> None:
    """Where the time goes by block of the spec (or by layer, for a model
    without blocks), from the per-op profile."""
    name = f"{Path(r['model']).name} on {r['device']} ({r.get('accelerator')})"
    if ob["units"]:
        p = Table(title="time per block (per-op profile)")
        for col in ("block", "ops", "ms", "share"):
            p.add_column(col, justify="left" if col == "block" else "right")
        for u in ob["units"]:
            p.add_row(u["unit"], str(u["ops"]), f"{u['ms']:.4f}", f"{u['share']:.1%}")
    else:
        p = Table(title="time per layer (per-op profile, slowest 15)")
        for col in ("layer", "ops", "ms", "share"):
            p.add_column(col, justify="left" if col == "layer" else "right")
        for u in sorted(ob["layers"], key=lambda u: -u["ms"])[:15]:
            p.add_row(u["layer"], str(u["ops"]), f"{u['ms']:.4f}", f"{u['share']:.1%}")
    out.print(p)
    whole, bench = ob.get("whole_ms"), ob.get("bench_ms")
    line = f"{name}: {ob['method']}: sum {ob['sum_ms']:.4f} ms"
    if bench:
        line += f", {ob['sum_ms'] / bench:.0%} of the benchmark's {bench:.4f} ms"
    if whole and whole != bench:
        line += f" ({ob['sum_ms'] / whole:.0%} of the whole model timed the same way, {whole:.4f} ms)"
    if ob.get("unmeasured"):
        line += f"; {ob['unmeasured']} op(s) could not run alone"
    out.print(line, markup=False)


def _plot(results, path):
    """Latency distributions (host runs keep every sample): one histogram per
    model on a log time axis, so that a few slow outliers do not squash the
    rest; the median marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from odml.files import write_bytes_atomic

    with_samples = [r for r in results if r.get("samples_ms")]
    if not with_samples:
        from odml.devices.host import BenchError

        raise BenchError("--plot: no per-run samples to draw (adb runs report summaries only)")
    import numpy as np

    n = len(with_samples)
    lo = min(min(r["samples_ms"]) for r in with_samples)
    hi = max(max(r["samples_ms"]) for r in with_samples)
    bins = np.geomspace(max(lo, 1e-4) * 0.95, hi * 1.05 if hi > lo else lo * 1.1 + 1e-4, 40)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.3 + 1.2 * n), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], with_samples):
        x = np.asarray(r["samples_ms"])
        med = float(np.median(x))
        ax.hist(x, bins=bins, color="#2e86ab", alpha=0.85)
        ax.axvline(med, color="#d1495b", lw=1.2)
        ax.set_ylabel("runs", fontsize=8)
        ax.set_title(f"{Path(r['model']).name} on {r['device']}: median {med:.3f} ms, p90 {np.percentile(x, 90):.3f} ms, "
                     f"{len(x)} runs", fontsize=8, loc="left")
        ax.grid(axis="x", alpha=0.3, which="both")
    axes[-1, 0].set_xscale("log")
    axes[-1, 0].set_xlabel("latency per inference (ms, log scale; red: median)")
    fig.suptitle("odml bench: latency distributions", fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


