"""report.html and `odml report`: the page of a run folder, drawn from its
files alone. The pages of real runs are checked in a real browser where the
verbs' own tests make those runs (test_search, test_compress, test_export,
test_bench, test_predictor); here: the checker itself, and the folders a
page cannot be made of, or only in part."""

import json
from pathlib import Path

import pytest

from helpers import assert_one_line_error, check_page, open_in_chromium

pytestmark = pytest.mark.fast

def _search_folder(root: Path, trials: int = 4, summary: bool = True) -> Path:
    """A search folder as odml search writes it (its files' shapes), with
    ``trials`` records and, when ``summary``, its summary.json."""
    root.mkdir(parents=True)
    (root / "search.json").write_text(json.dumps({"schema": 1, "space": "small32", "target_ms": 0.5,
                                                  "strategy": "evolution", "device": "host"}))
    lines = ["stem_k3_s2_c16 fused_k3_e1_s1_c16 dw_k5_e4_s2_c24 gc_k3_e2_s1_c24_g2 head_c256",
             "stem_k3_s2_c24 dw_k3_e2_s1_c16 fused_k5_e4_s2_c40 dw_k7_e6_s2_c80 head_c512"]
    recs = []
    for i in range(trials):
        acc, ms = 0.4 + 0.05 * i, 0.2 + 0.1 * i
        recs.append({"trial_id": str(i), "line": lines[i % 2], "status": "completed", "metrics": {},
                     "accuracy": acc, "latency_ms": ms, "reward": acc - 0.1 * abs(ms / 0.5 - 1),
                     "params": 100_000 * (i + 1), "macs": 2_000_000 * (i + 1)})
    (root / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if summary:
        best = max(recs, key=lambda r: r["reward"])
        (root / "summary.json").write_text(json.dumps({
            "schema": 1, "space": "small32", "device": "host", "target_ms": 0.5, "trials": trials, "trained": trials,
            "metric": "accuracy", "best": {k: best[k] for k in ("trial_id", "accuracy", "latency_ms", "params",
                                                                   "macs", "line", "reward")},
            "pareto": [{k: r[k] for k in ("trial_id", "accuracy", "latency_ms", "params", "macs", "line", "reward")}
                       for r in recs[:2]]}))
    return root


def test_the_checker_catches_a_page_that_fetches(tmp_path):
    """The browser check is a real one: a page that loads an image from an
    address is seen making the request (through the recording proxy)."""
    page = tmp_path / "report.html"
    page.write_text('<!DOCTYPE html><html><body><p>hello</p><img src="http://odml-test.invalid/x.png"></body></html>')
    hits, dom = open_in_chromium(page, tmp_path / "shot.png")
    assert any("odml-test.invalid" in h for h in hits), hits
    assert "hello" in dom


def test_a_search_folder_makes_a_page_with_its_figures(cli, tmp_path):
    out = _search_folder(tmp_path / "s")
    r = cli("report", out, "--json")
    assert r.exit_code == 0, r.stderr
    info = r.json()["report"]
    assert info["kind"] == "search" and Path(info["page"]) == out / "report.html"
    best = json.loads((out / "summary.json").read_text())["best"]
    got = check_page(out, "Search of small32", f"{best['accuracy']:.4g}", best["line"].split()[1],
                     "Candidates against the target", "The winner's blocks", "Every trial")
    assert info["size_bytes"] == got["size"] < 200_000
    html = (out / "report.html").read_text()
    # every trained trial drawn as a point with its title, in the front chart and in the trials over time
    assert html.count("<title>trial ") == 2 * 4, html.count("<title>trial ")
    assert f"<code>{best['line']}</code>" in html  # the winner's blocks are the best trial's


def test_what_the_page_says_is_escaped(cli, tmp_path):
    """Text from the run's files (an architecture line, a segmentation
    head's tokens) is written as text, never as markup."""
    out = _search_folder(tmp_path / "s", trials=2)
    doc = json.loads((out / "summary.json").read_text())
    doc["best"]["line"] += " seg_<b>bold</b>&x"
    (out / "summary.json").write_text(json.dumps(doc))
    assert cli("report", out).exit_code == 0
    html = (out / "report.html").read_text()
    assert "<b>bold</b>" not in html and "seg_&lt;b&gt;bold&lt;/b&gt;&amp;x" in html
    check_page(out, "seg_<b>bold</b>&x")


def test_the_page_reads_the_schemas_the_verbs_write():
    """report/views.py reads each verb's newest schema: one bump without the
    other would make every run of that verb end without its page."""
    from odml.compress.run import SCHEMA as compress
    from odml.devices.run_page import SCHEMA as bench
    from odml.exporters.export import SCHEMA as export
    from odml.nas.config import SCHEMA as search
    from odml.nas.predictor import SCHEMA as calibrate
    from odml.report.views import SCHEMAS

    assert SCHEMAS == {"search": search, "compress": compress, "export": export, "calibrate": calibrate,
                       "bench": bench}


def test_stopped_early_trials_are_trained_ones(cli, tmp_path):
    """The median rule's stopped trials were trained: drawn and counted."""
    out = _search_folder(tmp_path / "s", trials=4)
    recs = [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()]
    recs[3]["status"] = "stopped_early"
    (out / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert cli("report", out).exit_code == 0
    assert (out / "report.html").read_text().count("<title>trial ") == 8
    assert "4 trained; 0 not trained" in check_page(out)["text"]


def test_folders_a_page_cannot_be_made_of(cli, tmp_path):
    assert_one_line_error(cli("report", tmp_path / "missing"), "missing", "not a folder")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("report", tmp_path / "empty"), "empty", "no odml run in it")
    out = _search_folder(tmp_path / "torn")
    (out / "summary.json").write_text('{"schema": 1, "space": "small32", "tar')  # cut short by a kill
    assert_one_line_error(cli("report", out), "summary.json", "not valid JSON", "cut short")
    out = _search_folder(tmp_path / "future")
    doc = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**doc, "schema": 99}))
    assert_one_line_error(cli("report", out), "schema 99", "newer")
    (tmp_path / "cal").mkdir()
    (tmp_path / "cal" / "calibrate.json").write_text("{}")
    (tmp_path / "cal" / "measurements.jsonl").write_text('{"key": "a"}\n{"key": "b"}\n')
    assert_one_line_error(cli("report", tmp_path / "cal"), "predictor.json", "did not finish", "2 measurements")
    for name in ("missing", "empty", "torn", "future", "cal"):
        assert not (tmp_path / name / "report.html").exists()


def test_an_unfinished_run_gets_a_page_that_says_so(cli, tmp_path):
    """A search killed before its summary: the page says it did not finish
    and shows the trials finished so far; a trial file cut mid-line loses
    that line only; a section whose data is unusable says so in place."""
    out = _search_folder(tmp_path / "s", trials=3, summary=False)
    with open(out / "trials.jsonl", "a") as f:
        f.write('{"trial_id": "3", "line": "stem_k3')  # the kill, mid-write
    assert cli("report", out).exit_code == 0
    text = check_page(out, "did not finish", "run the same command to resume")["text"]
    assert "3 trials" in text
    out = _search_folder(tmp_path / "bad", trials=2)
    doc = json.loads((out / "summary.json").read_text())
    doc["best"]["line"] = "stem_k3_s2_c16 nonsense_block head_c256"
    (out / "summary.json").write_text(json.dumps(doc))
    assert cli("report", out).exit_code == 0
    check_page(out, "This part could not be drawn", "nonsense_block", "Every trial", drawn=False)


def test_an_older_search_summary_and_an_unfinished_compression(cli, tmp_path):
    """A summary from before its newer keys (no metric, trained or pareto)
    still makes a page; a compression killed before its report.json gets a
    page of the models results.jsonl holds, saying it did not finish."""
    out = _search_folder(tmp_path / "old")
    doc = json.loads((out / "summary.json").read_text())
    for k in ("metric", "trained", "pareto"):
        doc.pop(k)
    (out / "summary.json").write_text(json.dumps({**doc, "schema": 1}))
    assert cli("report", out).exit_code == 0
    text = check_page(out, f"{doc['best']['accuracy']:.4g}", "best accuracy")["text"]
    assert "no trial was trained" not in text
    c = tmp_path / "c"
    c.mkdir()
    (c / "compress.json").write_text(json.dumps({"schema": 1, "teacher": "t.keras", "device": "host"}))
    rows = [{"label": "teacher_t", "role": "teacher", "model": "t.keras", "accuracy": 0.91, "latency_ms": 0.12,
             "size_bytes": 2_800_000, "params": 700_000},
            {"label": "v2_tiny_w0.25", "role": "student", "accuracy": 0.783, "int8_accuracy": 0.776,
             "latency_ms": 0.027, "size_bytes": 470_000, "params": 290_000, "line": "stem_k3_s2_c16 head_c352"}]
    (c / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli("report", c).exit_code == 0
    check_page(c, "did not finish", "v2_tiny_w0.25", "0.776", "0.91")


def test_bench_report_refuses_another_runs_folder(cli, tmp_path):
    out = _search_folder(tmp_path / "s", trials=2)
    before = sorted(p.name for p in out.iterdir())
    assert_one_line_error(cli("bench", tmp_path / "m.tflite", "--report", out), "--report", "search.json",
                          "another odml run")
    assert sorted(p.name for p in out.iterdir()) == before
