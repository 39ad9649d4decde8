"""What each verb's page shows, drawn from its run folder's files alone
(a pure function of them: `odml report DIR` and the verb's own last step
give the same page). Each view reads the files it needs; a file missing or
cut short turns into a section that says so, or, where nothing of the run
can be shown, a one-line ReportError.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from odml.errors import OdmlError
from odml.files import read_jsonl
from odml.report.page import Page, note, num, table
from odml.report.svg import Axes, Mark, Series, bars, blocks, histogram, scatter


class ReportError(OdmlError):
    """A folder a page cannot be made of."""


SCHEMAS = {"search": 1, "compress": 1, "export": 1, "calibrate": 2, "bench": 1}  # the newest report schema each view reads


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object of the run folder (one-line error when missing or cut short)."""
    from odml.documents import read_document

    try:
        doc = read_document(path, "run", ReportError)
    except ReportError as e:
        cut = "; cut short by a kill?" if "not valid JSON" in str(e) else ""
        raise ReportError(f"{e}{cut}{'; ' + what if what else ''}") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a JSON object{'; ' + what if what else ''}")
    return doc


def check_schema(doc: dict[str, Any], kind: str, path: Path) -> None:
    got = doc.get("schema")
    if got is not None and got > SCHEMAS[kind]:
        raise ReportError(f"{path}: schema {got} is newer than this odml reads ({SCHEMAS[kind]}); upgrade odml")


def _mb(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) else f"{v / 1e6:.2f}M"


# ---- search ------------------------------------------------------------------------------
def search_page(folder: Path) -> Page:
    """A search: candidates against the target, the winner's blocks, trials
    over time, the screen's ranking, every trial."""
    settings = read_json(folder / "search.json", "not a search folder, or its settings were lost")
    summary_path = folder / "summary.json"
    summary = read_json(summary_path, "") if summary_path.is_file() else None
    if summary is not None:
        check_schema(summary, "search", summary_path)
    recs = read_jsonl(folder / "trials.jsonl")
    target = (summary or {}).get("target_ms", settings.get("target_ms"))
    space = (summary or {}).get("space", settings.get("space"))
    device = (summary or {}).get("device", settings.get("device", "?"))
    metric = (summary or {}).get("metric", "accuracy")
    page = Page(f"Search of {space}", f"{len(recs)} trials on {device}, target {num(target)} ms, "
                f"{settings.get('strategy', '?')} strategy", source=str(folder))
    best = (summary or {}).get("best")
    trained = (summary or {}).get("trained", sum(1 for r in recs if _trained(r)))  # (older summaries lack it)
    if summary is None:
        page.verdict = (False, "summary.json is missing: the search did not finish (run the same command to resume); "
                               "the trials finished so far are shown")
    elif not trained:
        page.verdict = (False, "no trial was trained: no best model")
    if best and summary and trained:
        page.figures += [(num(best.get("accuracy")), f"best {metric}"), (f"{num(best.get('latency_ms'))} ms", "its latency"),
                         (_mb(best.get("params")), "its parameters"), (_mb(best.get("macs")), "its MACs")]
    page.figures += [(num(len(recs)), "trials"), (num((summary or {}).get("considered", len(recs))), "considered")]
    page.section("Candidates against the target", lambda: _front(recs, summary, target, metric))
    if best and best.get("line"):
        page.section("The winner's blocks", lambda: _blocks(best["line"]))
    page.section("Trials over time", lambda: _over_time(recs))
    if summary and summary.get("screen"):
        page.section("How the screen ranked", lambda: _screen(summary["screen"]))
    page.section("Every trial", lambda: _trials(recs, metric))
    return page


def _trained(r: dict[str, Any]) -> bool:
    """Trained (to the end, or stopped early by the median rule), as the search counts it."""
    m = r.get("metrics") or {}
    return r.get("status") in ("completed", "stopped_early") and not m.get("rejected") and not m.get("duplicate")


def _tip(r: dict[str, Any], metric: str) -> str:
    return (f"trial {r.get('trial_id')}: {metric} {num(r.get('accuracy'))}, {num(r.get('latency_ms'))} ms, "
            f"{_mb(r.get('params'))} parameters, reward {num(r.get('reward'))}\n{r.get('line', '')}")


def _front(recs: list[dict[str, Any]], summary: dict[str, Any] | None, target: Any, metric: str) -> str:
    trained = [r for r in recs if _trained(r)]
    # the front as summary.json gives it: its latencies measured (a predicted search measures its front at the end)
    front = [p for p in (summary or {}).get("pareto", []) if isinstance(p.get("latency_ms"), (int, float))]
    front_ids = {p["trial_id"] for p in front}
    series = [Series("trained", [(r["latency_ms"], r["accuracy"], _tip(r, metric)) for r in trained
                                 if r["trial_id"] not in front_ids], hollow=True),
              Series("Pareto front", [(r["latency_ms"], r["accuracy"], _tip(r, metric)) for r in front],
                     color="#d62728", line=True, size=4.5)]
    base = (summary or {}).get("baselines") or []
    if base:
        series.append(Series("your models", [(b["latency_ms"], b["accuracy"], f"{b['name']}: {metric} "
                                              f"{num(b['accuracy'])}, {num(b['latency_ms'])} ms") for b in base],
                             color="#2ca02c", size=5))
    marks = [Mark(float(target), f"target {num(target)} ms")] if isinstance(target, (int, float)) else []
    svg = scatter(series, Axes("latency (ms, log scale)", metric, log_x=True, marks=marks),
                  "trained candidates: accuracy against latency")
    rejected = len(recs) - len(trained)
    rows = [(r["trial_id"], r.get("accuracy"), r["latency_ms"], r.get("params"), r.get("reward"), r.get("line", ""))
            for r in sorted(front, key=lambda r: r["latency_ms"])]
    return (svg + note(f"{len(trained)} trained; {rejected} not trained (rejected, failed or repeated). "
                       "Hover a point for its architecture.")
            + table(["trial", metric, "ms", "params", "reward", "architecture (the front)"], rows, text_cols=(5,)))


def _blocks(line: str) -> str:
    from odml.zoo.spec import parse_line

    tokens = line.split()
    own = [t for t in tokens if not t.startswith("seg_")]
    stem, blks, head = parse_line(" ".join(own))
    extra = [t for t in tokens if t.startswith("seg_")]
    has_head = any(t.startswith("head_") for t in own)
    svg = blocks(stem, blks, head if has_head else None, "the winner's blocks")
    return (svg + note("Colour: depthwise IBN blue, fused IBN orange, group-conv IBN green; box width grows with "
                       "the channels, height with the kernel.")
            + (note("Segmentation head: " + " ".join(extra)) if extra else "")
            + f'<p class="note"><code>{escape(line)}</code></p>')


def _over_time(recs: list[dict[str, Any]]) -> str:
    """Each trained trial's reward when it finished (minutes since the search
    began: the first finish less its training time), the best so far as a
    line; in the order they finished where the records have no times."""
    from datetime import datetime

    def at(r: dict[str, Any]) -> float | None:
        try:
            return datetime.fromisoformat(str(r["finished_at"])).timestamp()
        except (KeyError, TypeError, ValueError):
            return None

    times = [at(r) for r in recs]
    timed = all(t is not None for t in times) and bool(times)
    if timed:
        t0 = min(t - float(r.get("wall_s") or 0) for t, r in zip(times, recs))
        order = sorted(range(len(recs)), key=lambda i: times[i])
    else:
        order = list(range(len(recs)))
    pts, best_pts, best = [], [], None
    for n, i in enumerate(order):
        r, rw = recs[i], recs[i].get("reward")
        if not isinstance(rw, (int, float)):
            continue
        x = round((times[i] - t0) / 60, 3) if timed else n + 1
        when = f"{num(x)} min" if timed else f"{n + 1} trials"
        tip = f"trial {r.get('trial_id')} ({r.get('status')}): reward {num(rw)}, at {when}"
        if _trained(r):
            pts.append((x, rw, tip))
            best = rw if best is None else max(best, rw)
            best_pts.append((x, best, f"best so far at {when}: {num(best)}"))
    label = "minutes since the search began" if timed else "trial (in the order they finished)"
    return scatter([Series("trained trial", pts, hollow=True), Series("best so far", best_pts, color="#d62728",
                                                                      line=True, size=2)],
                   Axes(label, "reward"), "reward of each trial over time")


def _screen(sc: dict[str, Any]) -> str:
    taus = sorted(((k, v) for k, v in (sc.get("kendall_tau") or {}).items() if isinstance(v, (int, float))),
                  key=lambda kv: -kv[1])
    rows = [(k, v) for k, v in taus]
    if isinstance(sc.get("predictor_tau"), (int, float)):
        rows.insert(0, ("the predictor (before each trial trained)", sc["predictor_tau"]))
    return (note(f"Screen: {sc.get('screen')}; {sc.get('trained')} trained trials; Kendall tau of each score against "
                 "the trained accuracy (1: the same order, 0: no relation).")
            + bars([(k, v) for k, v in rows], "tau", "Kendall tau per score")
            + table(["score", "Kendall tau"], rows))


def _trials(recs: list[dict[str, Any]], metric: str) -> str:
    rows = [(r.get("trial_id"), r.get("status"), r.get("reward"), r.get("accuracy"), r.get("latency_ms"),
             r.get("params"), r.get("macs"), r.get("line", "")) for r in
            sorted(recs, key=lambda r: -(r.get("reward") if isinstance(r.get("reward"), (int, float)) else -1e9))]
    return table(["trial", "status", "reward", metric, "ms", "params", "MACs", "architecture"], rows, text_cols=(7,))


# ---- compress ----------------------------------------------------------------------------
def compress_page(folder: Path) -> Page:
    """A compression: the students against the teacher, the table to pick
    from, the cost of the run per phase."""
    settings = read_json(folder / "compress.json", "not a compression folder, or its settings were lost")
    rep_path = folder / "report.json"
    rows = read_jsonl(folder / "results.jsonl")
    if rep_path.is_file():
        rep = read_json(rep_path, "")
        check_schema(rep, "compress", rep_path)
        teacher, students = rep.get("teacher") or {}, rep.get("students") or []
    else:
        rep, teacher = None, next((r for r in rows if r.get("role") == "teacher"), {})
        students = [r for r in rows if r.get("role") == "student"]
    page = Page(f"Compression of {Path(str(teacher.get('model') or settings.get('teacher', '?'))).name}",
                f"{len(students)} students on {settings.get('device', '?')}", source=str(folder))
    if rep is None:
        page.verdict = (False, "report.json is missing: the compression did not finish (run the same command to "
                               "resume); the models finished so far are shown")
    picked = (rep or {}).get("picked")
    if picked:
        page.figures.append((picked, "picked"))
    if teacher:
        page.figures += [(num(_score(teacher)), f"teacher {_metric([teacher])}"),
                         (f"{num(teacher.get('latency_ms'))} ms", "teacher latency")]
    page.section("Students against the teacher", lambda: _students(teacher, students))
    page.section("The table to pick from", lambda: _student_table(teacher, students))
    if rep is not None and rep.get("phases"):
        page.section("The cost of the run", lambda: _phases(rep["phases"]))
    if rep is not None and rep.get("notes"):
        page.section("Notes", lambda: "".join(note(n) for n in rep["notes"]))
    return page


SCORES = ("final_accuracy", "int8_miou", "miou", "int8_pck@0.2_vs_teacher", "pck@0.2_vs_teacher", "int8_accuracy",
          "accuracy")  # the figure a compression ranks by, the first a row has (int8 where quantized)


def _score(r: dict[str, Any]) -> Any:
    """What the run ranks a model by: its final figure (int8 where quantized;
    mIoU for segmentation, PCK against the teacher for keypoint students)."""
    for k in SCORES:
        if isinstance(r.get(k), (int, float)):
            return r[k]
    return None


def _metric(rows: list[dict[str, Any]]) -> str:
    keys = {k for r in rows for k in r}
    return "mIoU" if "miou" in keys else "PCK@0.2 vs the teacher" if "pck@0.2_vs_teacher" in keys else "accuracy"


def _students(teacher: dict[str, Any], students: list[dict[str, Any]]) -> str:
    def tip(r):
        return (f"{r.get('label')}: accuracy {num(r.get('accuracy'))} (int8 {num(r.get('int8_accuracy'))}), "
                f"{num(r.get('latency_ms'))} ms, {num((r.get('size_bytes') or 0) / 1024)} KB")

    out = []
    for x_key, x_label, scale in (("latency_ms", "latency (ms, log scale)", 1.0), ("size_bytes", "size (KB, log scale)",
                                                                                   1 / 1024)):
        drawn = [r for r in students if isinstance(r.get(x_key), (int, float))]
        series = [Series("students", [(r[x_key] * scale, _score(r), tip(r)) for r in drawn], size=4.5,
                         labels=[str(r.get("label", "")) for r in drawn] if len(drawn) <= 12 else None)]
        if teacher and isinstance(teacher.get(x_key), (int, float)):
            series.append(Series("teacher", [(teacher[x_key] * scale, _score(teacher), tip(teacher))],
                                 color="#d62728", size=6, labels=["teacher"]))
        out.append(scatter(series, Axes(x_label, f"{_metric(students)} (int8 where quantized)", log_x=True),
                           f"accuracy against {x_label}"))
    return "".join(out)


def _student_table(teacher: dict[str, Any], students: list[dict[str, Any]]) -> str:
    rows, hi = [], []
    everyone = ([teacher] if teacher else []) + students
    metric = _metric(everyone)
    fkey = {"mIoU": "miou", "PCK@0.2 vs the teacher": "pck@0.2_vs_teacher"}.get(metric, "accuracy")
    for r in everyone:
        rows.append((r.get("label"), r.get("params"), r.get(fkey), r.get(f"int8_{fkey}"),
                     (r.get("size_bytes") or 0) / 1024, r.get("latency_ms"), r.get("speedup"),
                     "yes" if r.get("pareto") else "", "picked" if r.get("picked") else "", r.get("line", "")))
        hi.append(bool(r.get("picked")))
    return table(["model", "params", metric, f"int8 {metric}", "KB", "ms", "speedup", "Pareto", "", "architecture"],
                 rows, text_cols=(9,), highlight=hi)


def _phases(ph: dict[str, Any]) -> str:
    parts = [(k.replace("_s", "").replace("_", " "), ph[k]) for k in ("teacher_s", "training_s", "export_s", "measure_s")
             if isinstance(ph.get(k), (int, float))]
    extra = ""
    sh = ph.get("shared")
    if isinstance(sh, dict):
        how = ("one width per step, every width in one graph" if sh.get("one_graph") else
               f"{sh.get('widths_per_step', '?')} width(s) per step, {sh.get('graphs', '?')} graphs"
               + (f" ({sh['one_graph_why']})" if sh.get("one_graph_why") else ""))
        extra += note(f"The students are widths of one network (the widest: {sh.get('widest', '?')}), trained "
                      f"together for {sh.get('epochs', '?')} epochs, {how}"
                      + (f"; then {sh['finetune_epochs']} apart" if sh.get("finetune_epochs") else "") + ".")
    if isinstance(ph.get("vs_one_student"), (int, float)) and not (isinstance(sh, dict) and sh.get("one_graph")):
        extra += note(f"{ph.get('students')} students trained together: a step costs {ph['vs_one_student']:.2f}x one "
                      "student's step alone.")
    vs = ph.get("run_vs_one_student")
    if isinstance(vs, dict) and isinstance(vs.get("this_run"), dict) and isinstance(vs.get("one_student"), dict):
        this, one = vs["this_run"], vs["one_student"]
        keys = [k for k in this if (this.get(k) or one.get(k))]
        rows = [(k[:-2].replace("_", " "), this.get(k), one.get(k)) for k in keys]
        rows.append(("whole", sum(this.get(k) or 0 for k in keys), sum(one.get(k) or 0 for k in keys)))
        extra += table(["phase", "this run (s)", f"one student's run (s): {vs.get('student', '?')} alone"], rows,
                       highlight=[False] * (len(rows) - 1) + [True]) + \
            note(f"this run costs {num(vs.get('ratio'))}x one student's run, both measured in this run (one "
                 "student's: its trace, as many steps at its step time, its export and measurement"
                 + ("; widths in one graph: the widest's own trace and steps in it, masks included" if
                    isinstance(sh, dict) and sh.get("one_graph") else "") + ").")
    return bars(parts, "s", "seconds per phase") + extra + note(f"wall time {num(ph.get('wall_s'))} s")


# ---- export ------------------------------------------------------------------------------
def export_page(folder: Path) -> Page:
    """An export: each file's size and parity against the model (per output
    where there are several), the per-layer quantization error where it
    was measured (--diagnose), what ran on the Edge TPU."""
    path = folder / "export.json"
    rep = read_json(path, "not an export folder")
    check_schema(rep, "export", path)
    arts = rep.get("artifacts") or []
    failed = [a["file"] for a in arts if a.get("parity_failed") and a.get("written") is not False]
    fallback = [a["file"] for a in arts if a.get("written") is False]
    page = Page(f"Export of {rep.get('model', '?')}", f"{len(arts)} files for {rep.get('target', '?')}, parity on "
                f"{rep.get('parity_inputs', '?')}", source=str(folder))
    page.verdict = (not failed and not fallback,
                    f"parity failed for {', '.join(failed)}" if failed else
                    f"no recipe met the budget for {', '.join(fallback)}: not written (the other files are)"
                    if fallback else "every file computes what the model computes, within its parity threshold")
    page.figures += [(_mb(rep.get("params")), "parameters"), (_mb(rep.get("macs")), "MACs"),
                     (num(len(arts)), "files")]
    page.section("Files and sizes", lambda: _artifacts(arts))
    page.section("Parity per file and output", lambda: _parity(arts))
    diag = [a for a in arts if a.get("diagnosis")]
    if diag:
        page.section("Per-layer quantization error", lambda: _diagnosis(diag))
    tpu = [a for a in arts if a.get("edgetpu")]
    if tpu:
        page.section("Edge TPU", lambda: _edgetpu(tpu))
    return page


def _artifacts(arts: list[dict[str, Any]]) -> str:
    rows = [(a.get("file") + (" (not written)" if a.get("written") is False else ""), a.get("precision"), a.get("io"),
             (a.get("size_bytes") or 0) / 1024, a.get("size_vs_fp32"), a.get("convert_s"),
             ", ".join(f"{k} {v}" for k, v in (a.get("ops") or {}).items())) for a in arts]
    return (bars([(a.get("file", "?"), (a.get("size_bytes") or 0) / 1024) for a in arts
                  if a.get("written") is not False], "KB", "size per file")
            + table(["file", "precision", "io", "KB", "of fp32", "convert s", "ops"], rows, text_cols=(6,)))


PARITY_FIGURES = ("top1_agreement", "rel_mean_err", "max_abs_err", "keras_accuracy", "tflite_accuracy")


def _parity(arts: list[dict[str, Any]]) -> str:
    rows, bad = [], []
    for a in arts:
        par = a.get("parity") or {}
        outs = par.get("outputs") or {"": par}
        for name, o in outs.items():
            rows.append((f"{a.get('file')}{' / ' + name if name else ''}", *(o.get(k) for k in PARITY_FIGURES),
                         "FAILED: " + ", ".join(map(str, a["parity_failed"])) if a.get("parity_failed") else "passed"))
            bad.append(bool(a.get("parity_failed")))
    th = "; ".join(f"{a.get('file')}: " + ", ".join(f"{k} {v}" for k, v in (a.get("parity_threshold") or {}).items())
                   for a in arts if a.get("parity_threshold"))
    return (table(["file / output", "top-1 agreement", "relative mean error", "max abs error", "model accuracy",
                   "file accuracy", "verdict"], rows, highlight=bad)
            + note(f"Thresholds: {th}" if th else "No thresholds recorded."))


def _diagnosis(arts: list[dict[str, Any]]) -> str:
    out = []
    for a in arts:
        d = a["diagnosis"]
        worst = d.get("worst") or []
        out.append(note(f"{a.get('file')}: {d.get('ops_matched')} of {d.get('ops')} ops matched to the float model on "
                        f"{d.get('samples')} inputs; the error each op adds (its output against the float op's):"))
        out.append(bars([(f"{w.get('layer') or w.get('tensor')} ({w.get('kind')})", w.get("added", w.get("error")))
                         for w in worst], "", f"quantization error added per op, {a.get('file')}", color="#d62728"))
        out.append(table(["op", "kind", "layer", "error", "added"], [(w.get("op"), w.get("kind"), w.get("layer"),
                                                                     w.get("error"), w.get("added")) for w in worst]))
    return "".join(out)


def _edgetpu(arts: list[dict[str, Any]]) -> str:
    def first(e: dict[str, Any]) -> str:
        f = e.get("first_unsupported") or ""
        return f"{f.get('op', '')}: {f.get('reason', '')}" if isinstance(f, dict) else str(f)

    rows = [(a.get("file"), (a["edgetpu"] or {}).get("on_edgetpu"), (a["edgetpu"] or {}).get("on_cpu"),
             first(a["edgetpu"] or {})) for a in arts]
    return table(["file", "ops on the Edge TPU", "ops on the CPU", "first op left on the CPU"], rows, text_cols=(3,))


# ---- calibrate ---------------------------------------------------------------------------
def calibrate_page(folder: Path) -> Page:
    """A latency predictor's calibration: predicted against measured latency
    on the models held out of the fit, and what each kind of unit costs."""
    path = folder / "predictor.json"
    if not path.is_file():
        n = len(read_jsonl(folder / "measurements.jsonl"))
        raise ReportError(f"{path}: missing: the calibration did not finish ({n} measurements so far; run the same "
                          "command to resume)")
    doc = read_json(path, "")
    check_schema(doc, "calibrate", path)
    acc = doc.get("accuracy") or {}
    space = doc.get("space") or {}
    page = Page(f"Latency predictor for {space.get('name', '?')} on {doc.get('device', '?')}",
                f"{doc.get('precision')}, {doc.get('threads')} thread(s), {doc.get('statistic')} of the runs; "
                f"{len(doc.get('models_fit') or [])} models fitted, {len(doc.get('held_out') or [])} held out",
                source=str(folder))
    page.figures += [(f"{100 * acc['within_10pct']:.0f}%" if isinstance(acc.get("within_10pct"), float) else "-",
                      "held out within 10%"),
                     (f"{100 * acc['mape']:.1f}%" if isinstance(acc.get("mape"), float) else "-", "mean abs error"),
                     (f"{num(acc.get('rmse_ms'))} ms", "RMSE"), (f"{num(doc.get('calibration_s'))} s", "calibration")]
    page.section("Predicted against measured (held-out models)", lambda: _held_out(doc.get("held_out") or []))
    page.section("What each kind of unit costs", lambda: _units(doc.get("units") or []))
    return page


def _held_out(rows: list[dict[str, Any]]) -> str:
    pts = [(r["ms"], r["predicted_ms"], f"measured {num(r['ms'])} ms, predicted {num(r['predicted_ms'])} ms\n"
            f"{r.get('line', '')}") for r in rows if isinstance(r.get("ms"), (int, float))
           and isinstance(r.get("predicted_ms"), (int, float))]
    if not pts:
        return note("No model was held out.")
    lo, hi = min(min(p[0], p[1]) for p in pts), max(max(p[0], p[1]) for p in pts)
    diag = Series("predicted = measured", [(lo, lo, ""), (hi, hi, "")], color="#999", line=True, size=0)
    svg = scatter([Series("held-out model", pts, size=4.5), diag], Axes("measured (ms)", "predicted (ms)"),
                  "predicted against measured latency")
    table_rows = [(r.get("ms"), r.get("predicted_ms"), (r["predicted_ms"] / r["ms"] - 1) * 100 if r.get("ms") else None,
                   r.get("line", "")) for r in sorted(rows, key=lambda r: r.get("ms") or 0)]
    return svg + table(["measured ms", "predicted ms", "error %", "architecture"], table_rows, text_cols=(3,))


def _units(units: list[dict[str, Any]]) -> str:
    by: dict[str, list[float]] = {}
    for u in units:
        d = u.get("unit") or {}
        key = f"{d.get('kind')} k{d.get('kernel')}" if d.get("kind") not in ("stem", "head") else str(d.get("kind"))
        if isinstance(u.get("ms"), (int, float)):
            by.setdefault(key, []).append(u["ms"])
    rows = sorted(((k, sum(v) / len(v)) for k, v in by.items()), key=lambda kv: -kv[1])
    return (bars(rows, "ms", "mean measured ms per unit kind")
            + note(f"{len(units)} units measured; each bar is the mean over that kind's shapes."))


# ---- bench -------------------------------------------------------------------------------
def bench_page(folder: Path) -> Page:
    """A bench run: the budget verdict first (with --budget), then each
    model's latency distribution per device, the figures, the OVIC score
    and accuracy, and the per-op profile per block where measured."""
    path = folder / "bench.json"
    doc = read_json(path, "not a bench report folder")
    check_schema(doc, "bench", path)
    results = doc.get("results") or []
    page = Page("Benchmark" if "checks" not in doc else f"Latency budgets from {doc.get('source', '?')}",
                doc.get("about", ""), source=str(folder))
    if "checks" in doc:
        checks = doc["checks"]
        failed = [c for c in checks if not c.get("ok")]
        page.verdict = (not failed, f"all {len(checks)} budget checks passed" if not failed else
                        f"{len(failed)} of {len(checks)} budget checks failed: "
                        + "; ".join(f"{c.get('model')} {c.get('check')} {num(c.get('measured'))} against "
                                    f"{num(c.get('limit'))} {c.get('unit', '')}".rstrip() for c in failed))
        page.section("Budget checks", lambda: _checks(checks))
    if results:
        page.figures += [(num(len(results)), "models x devices")]
        page.section("Latency distributions", lambda: _distributions(results))
        page.section("Figures per model and device", lambda: _bench_table(results))
        scored = [r for r in results if r.get("classification")]
        if scored:
            page.section("Accuracy and the OVIC score", lambda: _scored(scored))
        for r in results:
            if r.get("op_breakdown") or r.get("blocks"):
                page.section(f"Where the time goes: {Path(str(r.get('model'))).name} on {r.get('device')}",
                             lambda r=r: _profile(r))
    return page


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = [(c.get("model"), c.get("check"), f"{'<=' if c.get('bound') == 'max' else '>='} {num(c.get('limit'))} "
             f"{c.get('unit', '')}", f"{num(c.get('measured'))} {c.get('unit', '')}", "pass" if c.get("ok") else "FAIL")
            for c in checks]
    ratio = [(f"{c.get('model')} {c.get('check')}", c["measured"] / c["limit"]) for c in checks
             if isinstance(c.get("measured"), (int, float)) and c.get("limit")]
    return (table(["model", "check", "limit", "measured", "verdict"], rows, highlight=[not c.get("ok") for c in checks])
            + bars(ratio, "x the limit", "measured against the limit", color="#7f7f7f"))


def _label(r: dict[str, Any]) -> str:
    acc = r.get("accelerator")
    return f"{Path(str(r.get('model'))).name} on {r.get('device')}{' (' + acc + ')' if acc and acc != 'cpu' else ''}"


def _distributions(results: list[dict[str, Any]]) -> str:
    groups = [(_label(r), r.get("samples_ms") or []) for r in results]
    if not any(v for _, v in groups):
        return note("The timed runs were not kept (a phone reports its statistics only).")
    return histogram(groups, "ms per run", "latency of each timed run")


def _bench_table(results: list[dict[str, Any]]) -> str:
    rows = [(_label(r), r.get("median_ms"), r.get("p90_ms"), r.get("p99_ms"), r.get("cv"), r.get("init_ms"),
             r.get("peak_rss_mb"), (r.get("size_bytes") or 0) / 1024, r.get("count")) for r in results]
    return table(["model", "median ms", "p90 ms", "p99 ms", "CV", "init ms", "peak MB", "KB", "runs"], rows)


def _scored(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        c = r["classification"]
        o = c.get("ovic") or {}
        rows.append((_label(r), c.get("data"), c.get("accuracy"), c.get("miou"), c.get("auc"),
                     c.get("mean_latency_ms"), o.get("score"), f"{o['within_budget']}/{o['images']}" if o else "-"))
    return table(["model", "data", "accuracy", "mIoU", "ROC AUC", "ms per input", "OVIC score", "within budget"], rows)


def _profile(r: dict[str, Any]) -> str:
    out = []
    ob = r.get("op_breakdown")
    if ob:
        units = ob.get("units") or []
        if units:
            out.append(bars([(str(u.get("unit")), u.get("ms")) for u in units], "ms", "time per block (op profile)"))
        else:  # a model without blocks of a spec: its layers
            out.append(bars([(str(u.get("layer")), u.get("ms")) for u in (ob.get("layers") or [])[:30]], "ms",
                            "time per layer (op profile)"))
        out.append(note(f"{ob.get('method', '')}; the ops sum to {num(ob.get('sum_ms'))} ms against "
                        f"{num(ob.get('bench_ms'))} ms for the whole model."))
    bl = r.get("blocks")
    if bl:
        out.append(bars([(f"{b.get('unit')} {b.get('what', '')}", b.get("median_ms")) for b in bl.get("blocks") or []],
                        "ms", "each block exported alone and measured", color="#ff7f0e"))
    return "".join(out)


VIEWS = {"search": search_page, "compress": compress_page, "export": export_page, "calibrate": calibrate_page,
         "bench": bench_page}
