"""odml search: hardware-aware architecture search, latency measured in the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from odml.cli.common import err, fmt_int, fmt_macs, handle_errors, out, print_json


@handle_errors
def search_cmd(
    space: str = typer.Option("small32", "--space", help="A built-in space (small32, edgetpu_v2; autoseg64 segments) or a JSON/YAML space file."),
    task: Optional[str] = typer.Option(None, "--task", help="classify or segment: what the models searched must do (default: what the space's models do; segment needs a space with a decoder head)."),
    show_space: bool = typer.Option(False, "--show-space", help="Print the space's choices and size, then exit."),
    data: Optional[str] = typer.Option(None, "--data", help="'digits' (the default) or 'shapes' (embedded; shapes:N for N images), a folder of class subfolders, or an .npz; segmentation: 'shapes-seg' (the default) or a folder of images and masks."),
    device: str = typer.Option("host", "--device", help="Where latency is measured: host, adb:SERIAL or edgetpu."),
    target_ms: Optional[float] = typer.Option(None, "--target-ms", help="Latency target in ms on --device (of the --statistic figure)."),
    reward_kind: Optional[str] = typer.Option(None, "--reward", help="mnas (soft), mnas_hard or abs (TuNAS); default mnas, abs for --strategy oneshot."),
    exponent: Optional[float] = typer.Option(None, "--exponent", help="w of mnas/mnas_hard (default -0.07) or beta of abs (-0.10)."),
    strategy: str = typer.Option("evolution", "--strategy", help="evolution (regularized), random, bayesian, hyperband, or oneshot (a weight-sharing supernet and a REINFORCE controller, TuNAS-style; latency from the predictor)."),
    trials: int = typer.Option(20, "--trials", help="Number of trials (candidates) in all."),
    epochs: int = typer.Option(3, "--epochs", help="Proxy-training epochs per candidate (Hyperband: the most)."),
    supernet_epochs: Optional[int] = typer.Option(None, "--supernet-epochs", help="--strategy oneshot: epochs of the supernet and its controller (default: --epochs; the architecture found is then trained --epochs)."),
    supernet_rule: str = typer.Option("single", "--supernet-rule", help="--strategy oneshot: single (one sampled path per step) or sandwich (the largest path on the labels, the smallest and two random ones distilled from it, per step: Once-for-All / BigNAS)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Start no new trial after this many minutes (rerun to continue)."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder; rerun the same command to resume."),
    precision: str = typer.Option("int8", "--precision", help="Precision candidates are exported in: int8, fp32, fp16, dynamic."),
    threads: int = typer.Option(1, "--threads", help="Threads of the latency measurement."),
    runs: int = typer.Option(30, "--runs", help="Benchmark runs per candidate."),
    max_params: Optional[int] = typer.Option(None, "--max-params", help="Reject candidates with more parameters, unmeasured."),
    max_macs: Optional[int] = typer.Option(None, "--max-macs", help="Reject candidates with more MACs, unmeasured."),
    reject_above: float = typer.Option(3.0, "--reject-above", help="Reject, untrained, candidates whose latency exceeds this x target: their MAC-based bound (unmeasured) or their measured latency."),
    population: int = typer.Option(10, "--population", help="Regularized evolution: population (newest finished trials)."),
    sample: int = typer.Option(3, "--sample", help="Regularized evolution: tournament sample size."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(3e-3, "--lr", help="Peak learning rate of proxy training."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Override the space's input size."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the oracles and the training."),
    latency: str = typer.Option("measured", "--latency", help="measured (every candidate exported and timed), predicted (by --predictor; the front's points measured at the end) or hybrid (every candidate predicted, the promising ones measured, the predictor refitted as they come)."),
    predictor: Optional[Path] = typer.Option(None, "--predictor", help="predicted/hybrid: a predictor.json from 'odml calibrate' for this device, space and precision (default: calibrate into OUT/calibration first)."),
    calibrate_minutes: float = typer.Option(10.0, "--calibrate-minutes", help="predicted/hybrid without --predictor: the calibration's time budget."),
    promising: float = typer.Option(1.5, "--promising", help="predicted/hybrid: train only candidates predicted at most this x target."),
    statistic: str = typer.Option("min", "--statistic", help="A candidate's latency: min (its fastest timed run, which repeats to a fraction of a percent) or median (of the runtime instances' medians, which moves with the machine's load)."),
    screen: Optional[str] = typer.Option(None, "--screen", help="evolution: how each trial's children are ranked before one is trained: latency (the largest estimated within the target; the default with predicted/hybrid latency), proxy (the best zero-cost --proxy within the target), predictor (the best reward predicted by a model of the trials trained so far) or none."),
    children: Optional[int] = typer.Option(None, "--children", help="Children screened per evolution trial (default 8)."),
    proxy: str = typer.Option("az_nas", "--proxy", help="--screen proxy: synflow, naswot, meco, az_expressivity, az_progressivity, az_trainability, az_complexity, params, macs, or az_nas / vote (ranks of several combined)."),
    distribute: str = typer.Option("none", "--distribute", help="Train each trial with tf.distribute: mirrored (this machine's GPUs). Trials spread across hosts with --role chief/worker."),
    latency_cache: Optional[Path] = typer.Option(None, "--latency-cache", help="A latency cache (JSONL) shared between runs (default: in the run folder)."),
    benchmark_binary: Optional[str] = typer.Option(None, "--benchmark-binary", help="adb: TFLite's benchmark_model for the phone."),
    role: str = typer.Option("single", "--role", help="single, or chief / worker of keras-tuner's distributed mode."),
    oracle: Optional[str] = typer.Option(None, "--oracle", help="chief/worker: the chief's HOST:PORT (default $KERASTUNER_ORACLE_IP:PORT or 127.0.0.1:8000)."),
    worker_id: Optional[str] = typer.Option(None, "--worker-id", help="worker: a unique id (default: host name and process id)."),
    baseline: list[str] = typer.Option([], "--baseline", help="Your own model (.tflite, .keras, .h5, .onnx, SavedModel) to place beside the front: timed on --device, scored on the validation split (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Search SPACE for the most accurate architecture at --target-ms on --device.

    Every candidate is exported (int8 by default) and measured on the device, proxy-trained
    on --data for a few epochs, and scored by the reward; with --latency predicted or hybrid a
    predictor fitted to the device ('odml calibrate') answers first, so candidates predicted far
    over the target cost nothing. Results go to --out: trials.jsonl,
    pareto.json/.png, best_spec.json (for 'odml train' and 'odml export') and summary.json.
    """
    from odml.nas.runner import SearchConfig, SearchError, distributed_env, prepare, run_search

    if show_space:
        from odml.nas.space import space_for_input

        _show_space(space_for_input(space, input_size).describe(), json_out)
        return
    if target_ms is None:
        raise SearchError("--target-ms is required (the latency target in ms)")
    if out_dir is None:
        raise SearchError("--out is required (the run folder)")
    if strategy == "oneshot" and role != "single":
        raise SearchError("--strategy oneshot trains one supernet in one process; --role chief/worker is for the "
                          "trial-based strategies")
    if reward_kind is None:
        reward_kind = "abs" if strategy == "oneshot" else "mnas"
    env = distributed_env(role, oracle, worker_id)
    cfg = SearchConfig(space=space, data=data, task=task, device=device, target_ms=target_ms, reward=reward_kind, exponent=exponent,
                       strategy=strategy, trials=trials, epochs=epochs, batch_size=batch_size, lr=lr, precision=precision,
                       threads=threads, runs=runs, max_params=max_params, max_macs=max_macs, reject_factor=reject_above,
                       population=population, sample=sample, seed=seed, input_size=input_size,
                       benchmark_binary=benchmark_binary, latency_cache=str(latency_cache) if latency_cache else None,
                       max_minutes=max_minutes, latency=latency, predictor=str(predictor) if predictor else None,
                       calibrate_minutes=calibrate_minutes, promising=promising, screen=screen, children=children, proxy=proxy, distribute=distribute,
                       statistic=statistic,
                       supernet_epochs=supernet_epochs, supernet_rule=supernet_rule)
    p = prepare(cfg, out_dir, role)
    for b in baseline:
        if not Path(b).exists():
            raise SearchError(f"--baseline {b}: model not found")
    progress = None if json_out or role == "worker" else SearchProgress(trials, p.out)
    if role == "chief":
        err.print(f"chief: serving the oracle on {env['KERASTUNER_ORACLE_IP']}:{env['KERASTUNER_ORACLE_PORT']}; "
                  "start workers with --role worker", markup=False)
    try:
        if progress:
            progress.start()
        res = run_search(p, role, env, listener=progress.record if progress else None,
                         on_phase=progress.phase if progress else None)
    except KeyboardInterrupt:
        if progress:
            progress.stop()
        from odml.files import read_jsonl

        done = len(read_jsonl(p.out / "trials.jsonl"))
        err.print(f"interrupted after {done} finished trials; run the same command to resume", markup=False)
        raise typer.Exit(130)
    except Exception:
        if progress:  # an error is one line: the bar goes
            progress.discard()
        raise
    finally:
        if progress:
            progress.stop()
    if baseline and role != "worker":
        from odml.nas.runner import finish, measure_baselines

        res = finish(p, measure_baselines(p, baseline))
    if json_out:
        print_json({"search": res})
        return
    if role == "worker":
        out.print(f"worker {res['tuner_id']}: trained {res['trained']} candidates in {res['wall_s']:.0f} s")
        return
    _show_summary(res)


class SearchProgress:
    """A bar over the trials with the best so far, on stderr."""

    def __init__(self, total: int, run: Path):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from odml.files import read_jsonl

        self.bar = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[best]}"), TextColumn("[dim]{task.fields[phase]}"),
                            TimeElapsedColumn(), console=err, transient=False)
        self.done = read_jsonl(run / "trials.jsonl")
        self.total = total
        self.task = None
        self.best: dict[str, Any] | None = max(self.done, key=lambda r: r["reward"]) if self.done else None

    def _best_text(self) -> str:
        b = self.best
        if not b:
            return "best: -"
        return f"best reward {b['reward']:.4f} (acc {b['accuracy']:.3f}, {b['latency_ms']:.2f} ms)"

    def start(self) -> None:
        self.bar.start()
        self.task = self.bar.add_task("search", total=self.total, completed=len(self.done), best=self._best_text(),
                                      phase="")

    def record(self, rec: dict[str, Any]) -> None:
        self.done.append(rec)
        if self.best is None or rec["reward"] > self.best["reward"]:
            self.best = rec
        self.bar.update(self.task, completed=len(self.done), best=self._best_text())

    def phase(self, text: str) -> None:
        self.bar.update(self.task, phase=text)

    def stop(self) -> None:
        self.bar.stop()

    def discard(self) -> None:
        self.bar.live.transient = True
        self.bar.stop()


def _show_space(d: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json({"space": d})
        return
    t = Table(title=f"search space {d['name']}: {d['size']:,} architectures (10^{d['log10_size']}), "
                    f"{d['hyperparameters']} hyperparameters")
    for col in ("stage", "pos", "stride", "filters", "depth", "type", "kernel", "expansion", "groups", "choices"):
        t.add_column(col, justify="left" if col in ("type", "filters", "groups") else "right")
    for r in d["positions"]:
        groups = ", ".join([*map(str, r["groups"]), *(f"size {s}" for s in r["group_size"])]) or "-"
        t.add_row(str(r["stage"]), f"{r['position']}{'?' if r['optional'] else ''}", str(r["stride"]),
                  ", ".join(map(str, r["filters"])), ", ".join(map(str, r["depth"])),
                  ", ".join(x.replace("ibn_", "") for x in r["type"]), ", ".join(map(str, r["kernel"])),
                  ", ".join(f"{e:g}" for e in r["expansion"]), groups, f"{r['choices']:,}")
    out.print(t)
    stem, head = d["stem"], d["head"]
    if d.get("scale"):
        out.print(_scale_line(d["name"], d["scale"]), markup=False)
    out.print(f"input {d['input_size']}x{d['input_size']}; stem filters {stem['filters']} kernel {stem['kernel']} "
              f"stride {stem['stride']}; head filters {head['filters']}; '?' marks positions that depth may drop")


def _scale_line(name: str, sc: dict[str, Any]) -> str:
    return (f"space {name} scaled to {sc['input_size']} px: widths x{sc['width']:g}, depths x{sc['depth']:g} (median "
            f"draw {fmt_macs(sc['median_macs'])} MACs, {sc['reference']} {fmt_macs(sc['reference_macs'])}, unscaled "
            f"{fmt_macs(sc['unscaled_median_macs'])}; NAME@full searches it unscaled)")


def _show_summary(s: dict[str, Any]) -> None:
    t = Table(title=f"search {s['space']} on {s['device']} ({s['precision']}): {s['trials']} trials, "
                    f"target {s['target_ms']:g} ms, reward {s['reward']} ({s['strategy']})")
    metric = "mIoU" if s.get("metric") == "miou" else "accuracy"
    for col in ("", "trial", "reward", metric, "latency ms", "predicted ms", "params", "MACs", "architecture"):
        t.add_column(col, justify="left" if col in ("", "architecture") else "right")
    best_id = s["best"]["trial_id"]
    rows = list(s["pareto"])
    if all(r["trial_id"] != best_id for r in rows):
        rows.append(s["best"])
    for r in rows:
        mark = ("best " if r["trial_id"] == best_id else "") + ("pareto" if r in s["pareto"] else "")
        pm = r.get("latency_predicted_ms")
        t.add_row(mark.strip(), r["trial_id"], f"{r['reward']:.4f}", f"{r['accuracy']:.4f}",
                  f"{r['latency_ms']:.3f}{'' if r.get('latency_source', 'measured') == 'measured' else ' (predicted)'}",
                  "-" if pm is None else f"{pm:.3f}",
                  fmt_int(r["params"]), fmt_macs(r["macs"]), r["line"])
    out.print(t)
    if s.get("considered", s["trials"]) > s["trials"]:
        out.print(f"{s['considered']} candidates considered: {s['considered'] - s['trials']} more screened and "
                  "not picked (screened.jsonl)")
    if s.get("space_scale"):
        out.print(_scale_line(s["space"], s["space_scale"]), markup=False)
    if s.get("mac_bound"):
        b = s["mac_bound"]
        out.print(f"MAC bound: the target allows about {fmt_macs(b['target_macs'])} MACs on this device (probe "
                  f"{b['probe']}: {fmt_macs(b['probe_macs'])} MACs in {b['probe_ms']:.3g} ms); the space's median "
                  f"draw costs {fmt_macs(b['median_macs'])}", markup=False)
    sc = s.get("screen")
    if sc:
        taus = {k: v for k, v in sc["kendall_tau"].items() if v is not None}
        said = ", ".join(f"{k} {v:+.2f}" for k, v in sorted(taus.items(), key=lambda kv: -kv[1]))
        line = f"screen {sc['screen']}: Kendall tau against the accuracy of the {sc['trained']} trained: {said or '-'}"
        if sc.get("predictor_tau") is not None:
            line += f"; the predictor's, before training: {sc['predictor_tau']:+.2f} over {sc['predictor_pairs']}"
        out.print(line, markup=False)
        if sc.get("fallbacks"):
            out.print(f"screen {sc['screen']}: {sc['fallbacks']} trials were screened by latency instead (the "
                      f"accuracy predictor fits on {sc['min_fit']} trained trials)", markup=False)
    if s.get("failed_reason"):
        out.print(f"{s['status'].get('failed', 0)} trials failed (trials.jsonl says why); the first: "
                  f"{s['failed_reason']}", markup=False)
    out.print(f"statuses: {', '.join(f'{k} {v}' for k, v in sorted(s['status'].items()))}; "
              f"{s.get('trained', 0)} trained, {s.get('measured', 0)} measured ({s.get('latency', 'measured')} latency); "
              f"trial time {s['trial_wall_s']:.0f} s")
    for b in s.get("baselines", []):
        out.print(f"baseline {b['name']}: {metric} {b['accuracy']:.4f}, {b['latency_ms']:.3f} ms on {b['device']} "
                  f"(fully trained; the trials are proxy-trained)", markup=False)
    for name, path in s["files"].items():
        out.print(f"{name}: {path}")
