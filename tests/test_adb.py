"""The adb device: the real `adb` client and server (Debian's package, which
.ci/run installs) against a stand-in phone on loopback that speaks the adb
protocol and runs the pushed benchmark on this host; and the benchmark_model
output parser on samples of benchmark_model's output formats."""

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from adb_standin import StandInDevice
from helpers import assert_one_line_error, need

from odml.devices.adb import parse_benchmark_output, parse_devices

HAVE_ADB = shutil.which("adb") is not None
needs_adb = pytest.mark.usefixtures("adb_client")


@pytest.fixture
def adb_client():
    """The real adb client; skips saying why, or fails under CI (.ci/run installs it)."""
    need(HAVE_ADB, "adb client not installed: apt-get install adb (.ci/run installs it)")


# ---- the parser, on benchmark_model's output formats ---------------------------------

@pytest.mark.fast
def test_parse_count_line_and_timings():
    text = """INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds
INFO: count=5 first=119340 curr=107466 min=103000 max=119340 avg=107466 std=5000
INFO: Running benchmark for at least 50 iterations and at least 1 seconds
INFO: count=50 first=103238 curr=102789 min=102639 max=103238 avg=102879 std=119
INFO: Inference timings in us: Init: 5617, First inference: 119340, Warmup (avg): 107466, Inference (avg): 102879
INFO: Memory footprint delta from the start of the tool (MB): init=5 overall=11.2695
"""
    r = parse_benchmark_output(text)
    assert r["count"] == 50 and r["mean_ms"] == pytest.approx(102.879) and r["min_ms"] == pytest.approx(102.639)
    assert r["max_ms"] == pytest.approx(103.238) and r["std_ms"] == pytest.approx(0.119)
    assert r["init_ms"] == pytest.approx(5.617) and r["first_ms"] == pytest.approx(119.340)
    assert r["warmup_mean_ms"] == pytest.approx(107.466)
    assert r["memory_init_mb"] == 5 and r["memory_delta_mb"] == pytest.approx(11.2695)


@pytest.mark.fast
def test_parse_variants():
    r = parse_benchmark_output("count=20 curr=1500(all same) min=1500 max=1500 avg=1500 std=0")
    assert r["count"] == 20 and r["mean_ms"] == 1.5 and r["std_ms"] == 0
    r = parse_benchmark_output("count=50 first=1.03e+05 curr=1.02e+05 min=1.01e+05 max=1.1e+05 avg=1.0288e+05 "
                               "std=119 p5=101200 median=102800 p95=104000")
    assert r["first_ms"] == pytest.approx(103) and r["mean_ms"] == pytest.approx(102.88)
    assert r["median_ms"] == pytest.approx(102.8) and r["p5_ms"] == pytest.approx(101.2)
    assert r["p95_ms"] == pytest.approx(104)
    r = parse_benchmark_output("Average inference timings in us: Warmup: 120000, Init: 4000, Inference: 110000")
    assert r["mean_ms"] == 110 and r["init_ms"] == 4 and r["warmup_mean_ms"] == 120


@pytest.mark.fast
def test_parse_op_profile():
    text = """============================== Summary by node type ==============================
\t             [Node type]\t  [count]\t  [avg ms]\t    [avg %]\t    [cdf %]\t  [mem KB]\t[times called]
\t                 CONV_2D\t       41\t     1.234\t    60.000%\t    60.000%\t     0.000\t            41
\t       DEPTHWISE_CONV_2D\t       12\t     0.500\t    25.000%\t    85.000%\t     0.000\t            12

Timings (microseconds): count=50
"""
    prof = parse_benchmark_output(text)["op_profile"]
    assert prof == [{"op": "CONV_2D", "count": 41, "avg_ms": 1.234, "percent": 60.0},
                    {"op": "DEPTHWISE_CONV_2D", "count": 12, "avg_ms": 0.5, "percent": 25.0}]


@pytest.mark.fast
def test_parse_devices():
    d = parse_devices("List of devices attached\nR58M123 device usb:1-1 product:a52 model:SM_A525F device:a52q "
                      "transport_id:2\nemulator-5554 unauthorized\n\n")
    assert d[0] == {"serial": "R58M123", "state": "device", "usb": "1-1", "product": "a52", "model": "SM_A525F",
                    "device": "a52q", "transport_id": "2"}
    assert d[1] == {"serial": "emulator-5554", "state": "unauthorized"}


# ---- end to end with the real adb client -------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def adb_env(tmp_path, monkeypatch):
    port = str(_free_port())
    monkeypatch.setenv("ODML_ADB_PORT", port)
    binary = tmp_path / "benchmark_model"
    src = Path(__file__).with_name("fake_benchmark_model.py").read_text()
    binary.write_text(f"#!{sys.executable}\n{src}")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    yield {"port": port, "binary": binary}
    subprocess.run(["adb", "-P", port, "kill-server"], capture_output=True, timeout=30)


def _connect(dev, port):
    p = subprocess.run(["adb", "-P", port, "connect", dev.serial], capture_output=True, text=True, timeout=30)
    assert "connected" in p.stdout, p.stdout + p.stderr


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    from odml.exporters.tflite import convert
    from odml.zoo import create_model, create_spec

    d = tmp_path_factory.mktemp("adb")
    path = d / "tiny.tflite"
    path.write_bytes(convert(create_model(create_spec("mobilenet_edgetpu_v1", num_classes=4, input_size=32,
                                                      width=0.25)), "fp32"))
    return path


@needs_adb
def test_devices_and_bench_over_adb(cli, tmp_path, adb_env, tflite):
    with StandInDevice(tmp_path / "phone", model="Pixel_Standin", abi="arm64-v8a", android="14") as dev:
        _connect(dev, adb_env["port"])
        rows = {d["device"]: d for d in cli("devices", "--json").json()["devices"]}
        row = rows[f"adb:{dev.serial}"]
        assert row["available"] and row["model"] == "Pixel_Standin"
        assert row["abi"] == "arm64-v8a" and row["android"] == "14"
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--threads", "2", "--core-mask", "1", "--runs", "20", "--min-secs", "0", "--op-profile", "--json")
        assert r.exit_code == 0, r.stderr
        res = r.json()["bench"][0]
        assert res["count"] >= 20 and 0 < res["min_ms"] <= res["median_ms"] <= res["max_ms"]
        assert res["init_ms"] > 0 and res["memory_delta_mb"] == pytest.approx(11.2695)
        assert {p["op"] for p in res["op_profile"]} >= {"CONV_2D", "DEPTHWISE_CONV_2D"}
        run = next(c for c in dev.commands if "benchmark_model" in c and "--graph" in c)
        assert run.startswith("taskset 1 ") and "--num_threads=2" in run
        # what was pushed was removed again
        assert any(p.endswith("/tiny.tflite") for p in dev.pushed)
        assert list((dev.tmp).iterdir()) == []


@needs_adb
def test_quoting_a_hostile_file_name(cli, tmp_path, adb_env, tflite):
    hostile = tmp_path / "my model; touch PWNED #.tflite"
    shutil.copy(tflite, hostile)
    with StandInDevice(tmp_path / "phone") as dev:
        _connect(dev, adb_env["port"])
        r = cli("bench", hostile, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "0", "--json")
        assert r.exit_code == 0, r.stderr
        assert not list((tmp_path / "phone").rglob("PWNED*"))
        assert r.json()["bench"][0]["count"] >= 5


@needs_adb
def test_retry_once_on_dropped_connection(cli, tmp_path, adb_env, tflite):
    with StandInDevice(tmp_path / "phone", drop_marker="--graph=", drops=1) as dev:
        _connect(dev, adb_env["port"])
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "0", "--json")
        assert r.exit_code == 0, r.stderr
        assert r.json()["bench"][0]["retried"] is True
        assert sum("--graph=" in c for c in dev.commands) == 2


@needs_adb
def test_device_gone_mid_run(cli, tmp_path, adb_env, tflite):
    with StandInDevice(tmp_path / "phone", vanish_marker="--graph=") as dev:
        _connect(dev, adb_env["port"])
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "0")
        assert_one_line_error(r, dev.serial)


@needs_adb
def test_adb_bad_input(cli, tmp_path, adb_env, tflite):
    with StandInDevice(tmp_path / "phone") as dev:
        _connect(dev, adb_env["port"])
        assert_one_line_error(cli("bench", tflite, "--device", "adb:NOPE123", "--benchmark-binary",
                                  adb_env["binary"]), "unknown device serial 'NOPE123'", dev.serial)
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary",
                                  tmp_path / "missing_bin"), "benchmark binary not found")
        noexec = tmp_path / "noexec"
        noexec.write_text("#!/bin/sh\n")
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", noexec),
                              "not executable")
        bad = tmp_path / "bad.tflite"
        bad.write_bytes(b"garbage")
        assert_one_line_error(cli("bench", bad, "--device", f"adb:{dev.serial}", "--benchmark-binary",
                                  adb_env["binary"]), "not a TFLite flatbuffer")


def test_adb_not_installed(cli, tflite, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ODML_ADB", raising=False)
    assert_one_line_error(cli("bench", tflite, "--device", "adb:X1", "--benchmark-binary", sys.executable),
                          "adb is not installed")


@needs_adb
def test_adb_times_out_cleanly(cli, tmp_path, adb_env, tflite):
    with StandInDevice(tmp_path / "phone") as dev:
        _connect(dev, adb_env["port"])
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "20", "--timeout", "3")
        assert_one_line_error(r, "timed out after 3 s")


@needs_adb
def test_search_measures_candidates_on_the_phone(cli, tmp_path, adb_env):
    """odml search --device adb:SERIAL: every candidate is pushed to the phone and
    measured there with benchmark_model; the cache is keyed by the phone."""
    import json

    from test_search import TINY

    from odml.files import read_jsonl

    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(TINY))
    with StandInDevice(tmp_path / "phone", model="Pixel_Standin") as dev:
        _connect(dev, adb_env["port"])
        out = tmp_path / "run"
        r = cli("search", "--space", space, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--target-ms", "0.05", "--trials", "2", "--epochs", "1", "--runs", "10", "--strategy", "random",
                "--out", out, "--json")
        assert r.exit_code == 0, r.stderr
        runs = [c for c in dev.commands if "benchmark_model" in c and "--graph" in c]
        cache = read_jsonl(out / "latency_cache.jsonl")
        assert len(runs) == len(cache) >= 1  # one phone run per measured architecture
        assert all(c["device"] == f"adb:{dev.serial}" for c in cache)
        recs = read_jsonl(out / "trials.jsonl")
        assert len(recs) == 2 and all(x["device"] == f"adb:{dev.serial}" and x["latency_ms"] > 0 for x in recs)


@needs_adb
def test_calibration_when_the_phone_goes_away(cli, tmp_path, adb_env):
    """odml calibrate --device adb:SERIAL: blocks are measured on the phone one
    by one; when it vanishes, one line, exit 2, and what was measured kept."""
    import json

    from test_search import TINY

    from odml.files import read_jsonl

    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(TINY))
    out = tmp_path / "cal"
    with StandInDevice(tmp_path / "phone", vanish_marker="unit3.tflite --") as dev:
        _connect(dev, adb_env["port"])
        r = cli("calibrate", "--space", space, "--device", f"adb:{dev.serial}", "--benchmark-binary",
                adb_env["binary"], "--precision", "fp32", "--minutes", "1", "--runs", "5", "--out", out)
        assert_one_line_error(r, f"adb:{dev.serial}", "after 3 measurements", "rerun the same command to resume")
        kept = read_jsonl(out / "measurements.jsonl")
        assert len(kept) == 3 and all(k["median_ms"] > 0 for k in kept)
        assert not (out / "predictor.json").exists()


@needs_adb
def test_failed_trials_are_recorded_and_the_search_goes_on(cli, tmp_path, adb_env):
    """A phone whose benchmark_model fails on some models (an op its runtime
    lacks): each such trial is recorded as failed with its reason, no
    traceback, and the search goes on; when every model fails, one line,
    exit 2."""
    import json

    from test_search import TINY

    from odml.files import read_jsonl

    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(TINY))
    flaky = tmp_path / "flaky_benchmark_model"  # fails on every other run, as a phone lacking an op would
    count = tmp_path / "count"
    flaky.write_text(f"#!/bin/sh\nn=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n"
                     f"if [ $((n % 2)) -eq 0 ]; then echo \"ERROR: Didn't find op for builtin opcode 'CONV_2D'\"; "
                     f"exit 1; fi\nexec {adb_env['binary']} \"$@\"\n")
    flaky.chmod(0o755)
    broken = tmp_path / "broken_benchmark_model"
    broken.write_text("#!/bin/sh\necho \"ERROR: Didn't find op for builtin opcode 'CONV_2D'\"\nexit 1\n")
    broken.chmod(0o755)
    with StandInDevice(tmp_path / "phone") as dev:
        _connect(dev, adb_env["port"])
        common = ("search", "--space", space, "--device", f"adb:{dev.serial}", "--target-ms", "0.05", "--trials",
                  "4", "--epochs", "1", "--runs", "5", "--strategy", "random")
        r = cli(*common, "--benchmark-binary", flaky, "--out", tmp_path / "some", "--json")
        assert r.exit_code == 0, r.stderr
        assert "Traceback" not in r.stderr and "FailedTrialError" not in r.stderr
        recs = read_jsonl(tmp_path / "some" / "trials.jsonl")
        failed = [x for x in recs if x["status"] == "failed"]
        assert len(recs) == 4 and 1 <= len(failed) < 4
        assert all("CONV_2D" in x["reason"] for x in failed)
        s = r.json()["search"]
        assert s["status"]["failed"] == len(failed) and s["best"]["trial_id"] not in {x["trial_id"] for x in failed}
        r = cli(*common, "--benchmark-binary", broken, "--out", tmp_path / "none")
        assert_one_line_error(r, "no candidate could be evaluated", "CONV_2D")
        assert "Traceback" not in r.stderr
        assert all(x["status"] == "failed" for x in read_jsonl(tmp_path / "none" / "trials.jsonl"))
