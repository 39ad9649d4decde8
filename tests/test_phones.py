"""Phones out of the box (issue 40): LiteRT's benchmark_model fetched for the
phone's ABI from a server on loopback (the published layout), cached with its
sha256; one row per accelerator with what ran on the delegate, read from
benchmark_model's real output formats; a min_delegated budget that fails CI;
big cores pinned and the phone's heat watched; per-op profiles on the phone
and on the host mapped to layers and to the blocks of the model's spec.
The real adb client against the stand-in phone (tests/adb_standin.py)."""

import http.server
import json
import threading
from pathlib import Path

import pytest
from adb_standin import StandInDevice
from helpers import assert_one_line_error
from test_adb import _connect, adb_env, adb_client, needs_adb, tflite  # noqa: F401 (fixtures)

from odml.devices.adb import delegation, heat, parse_benchmark_output
from odml.devices.binary import LITERT_VERSION

GPU_PARTIAL = """INFO: Created TensorFlow Lite delegate for GPU.
ERROR: Following operations are not supported by GPU delegate:
CUSTOM TFLite_Detection_PostProcess: Operation is not supported.
MEAN: Operation is not supported.
62 operations will run on the GPU, and the remaining 2 operation(s) will run on the CPU.
INFO: Replacing 62 out of 64 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 2 partitions for the whole graph.
INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ 1 delegate kernels.
INFO: count=50 first=1000 curr=900 min=880 max=1000 avg=900 std=20
"""


@pytest.mark.fast
def test_delegation_from_benchmark_model_logs():
    d = delegation(GPU_PARTIAL, "gpu")
    assert (d["delegate"], d["ops_delegated"], d["ops_total"], d["partitions"]) == ("TfLiteGpuDelegateV2", 62, 64, 2)
    assert d["share_ops"] == pytest.approx(62 / 64)
    assert d["fallback"] == [{"op": "CUSTOM TFLite_Detection_PostProcess", "reason": "Operation is not supported."},
                             {"op": "MEAN", "reason": "Operation is not supported."}]
    # the CPU's row reads XNNPACK's line, not the GPU delegate's
    cpu = delegation("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nINFO: Replacing 30 out of 31 node(s) "
                     "with delegate (TfLiteXNNPackDelegate) node, yielding 2 partitions for the whole graph.\n"
                     + GPU_PARTIAL, "cpu")
    assert (cpu["ops_delegated"], cpu["ops_total"]) == (30, 31)
    # NNAPI: the older line without the total, the refused ops with their reason
    nn = delegation("INFO: Created TensorFlow Lite delegate for NNAPI.\nWARNING: Operator MEAN (v1) refused by NNAPI "
                    "delegate: Unsupported operation type.\nINFO: Replacing 40 node(s) with delegate "
                    "(TfLiteNnapiDelegate) node, yielding 2 partitions.\n", "npu")
    assert nn["ops_delegated"] == 40 and nn["ops_total"] is None and nn["share_ops"] is None
    assert nn["fallback"] == [{"op": "MEAN", "reason": "Unsupported operation type."}]
    # silent fallback: asked for the GPU, nothing went there
    none = delegation("WARNING: GPU acceleration is unsupported on this platform.\nINFO: count=5 avg=100\n", "gpu")
    assert none["ops_delegated"] == 0 and "unsupported" in none["note"]


@pytest.mark.fast
def test_run_order_profile_and_time_share():
    text = """Operator-wise Profiling Info for Regular Benchmark Runs:
============================== Run Order ==============================
\t             [node type]\t  [first]\t  [avg ms]\t      [%]\t    [cdf%]\t  [mem KB]\t[times called]\t[Name]
\t     TfLiteGpuDelegateV2\t    3.000\t     3.000\t  75.000%\t  75.000%\t     0.000\t        1\t[m/block3_add/add]:64
\t                    MEAN\t    0.900\t     1.000\t  25.000%\t 100.000%\t     0.000\t        1\t[m/pool/Mean]:62

"""
    rows = parse_benchmark_output(text)["op_rows"]
    assert rows[1] == {"op": "MEAN", "avg_ms": 1.0, "percent": 25.0, "name": "m/pool/Mean", "node": 62}
    assert delegation(GPU_PARTIAL, "gpu", rows)["share_time"] == pytest.approx(0.75)


@pytest.mark.fast
def test_the_timings_are_the_runs_not_the_profile_summary():
    r = parse_benchmark_output("INFO: count=50 first=1100 curr=1000 min=990 max=1100 avg=1000 std=20 p5=995 "
                               "median=1000 p95=1050\nTimings (microseconds): count=150 first=9 min=1 max=99 avg=33 "
                               "std=20\nMemory (bytes): count=0\n")
    assert r["count"] == 50 and r["median_ms"] == 1.0 and r["max_ms"] == 1.1


@pytest.mark.fast
def test_the_fastest_cores_for_the_threads():
    from odml.devices.adb import fastest

    prime = {**{c: 1_800_000 for c in range(4)}, 4: 2_800_000, 5: 2_800_000, 6: 2_800_000, 7: 3_200_000}
    assert fastest(prime, 1) == "80" and fastest(prime, 2) == "f0" and fastest(prime, 4) == "f0"
    assert fastest(prime, 5) is None  # every core: no pinning
    assert fastest({c: 2_000_000 for c in range(8)}, 1) is None and fastest({}, 1) is None


@pytest.mark.fast
def test_heat_says_when_the_phone_may_throttle():
    before = {"z0": {"type": "cpu", "temp_c": 40.0, "trip_c": 95.0}, "z1": {"type": "bat", "temp_c": 30.0,
                                                                             "trip_c": 60.0}}
    calm = heat(before, {"z0": {**before["z0"], "temp_c": 42.0}, "z1": before["z1"]})
    assert calm["zone"] == "z0" and not calm["throttle_risk"]
    assert heat(before, {"z0": {**before["z0"], "temp_c": 47.0}, "z1": before["z1"]})["throttle_risk"]
    assert heat(before, {"z0": before["z0"], "z1": {**before["z1"], "temp_c": 61.0}})["throttle_risk"]
    assert heat({}, before) is None


@pytest.mark.fast
def test_op_rows_map_to_layers_and_blocks():
    from odml.zoo.opmap import by_layer
    from odml.zoo.registry import resolve

    c = resolve("mobilenet_edgetpu_v2_tiny")
    rows = [{"op": "QUANTIZE", "name": "tfl.quantize", "ms": 0.1},
            {"op": "CONV_2D", "name": "m/stem_act/Relu;m/stem_bn/FusedBatchNormV3;m/stem_conv/Conv2D1", "ms": 1.0},
            {"op": "CONV_2D", "name": "m/block0_project_bn/FusedBatchNormV3;m/block0_project_conv/Conv2D1", "ms": 2.0},
            {"op": "ADD", "name": "m/block2_add/add", "ms": 0.5},
            {"op": "MEAN", "name": "m/pool/Mean", "ms": 0.2},
            {"op": "FULLY_CONNECTED", "name": "Identity1", "ms": 0.3}]
    out = by_layer(rows, None, lambda layer: c.family.unit_of(c.config, layer))
    assert [r["unit"] for r in out["ops"]] == ["stem", "stem", "block0", "block2", "head", "head"]
    assert [r["layer"] for r in out["ops"]][1:4] == ["stem_act", "block0_project_bn", "block2_add"]
    assert {u["unit"]: round(u["ms"], 6) for u in out["units"]} == {"stem": 1.1, "block0": 2.0, "block2": 0.5,
                                                                     "head": 0.5}
    assert out["sum_ms"] == pytest.approx(4.1) and sum(u["share"] for u in out["units"]) == pytest.approx(1.0)
    # a family without blocks: layers only
    assert by_layer(rows)["units"] == []


# ---- the binary, fetched from a server on loopback --------------------------------------------------------

class _Server:
    """Serves ``files`` ({url path: bytes}) on loopback; ``short`` paths
    announce more bytes than they send (a download cut short)."""

    def __init__(self, files, short=()):
        self.files, self.short, self.hits = files, set(short), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) * (2 if self.path in outer.short else 1)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


BIN_PATH = f"/{LITERT_VERSION}/android_arm64/benchmark_model"


@pytest.fixture
def published(adb_env, tmp_path, monkeypatch):
    """LiteRT's published binaries, served on loopback (the stand-in benchmark_model in their place), and a
    fresh ODML_HOME for the cache."""
    server = _Server({BIN_PATH: Path(adb_env["binary"]).read_bytes()})
    monkeypatch.setenv("ODML_LITERT_BINARIES_URL", server.url)
    monkeypatch.setenv("ODML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ODML_BENCHMARK_BINARY", raising=False)
    yield server
    server.close()


def _cache(tmp_path):
    return tmp_path / "home" / "bin" / f"litert-{LITERT_VERSION}" / "arm64-v8a"


@needs_adb
def test_fetch_once_rows_per_accelerator_and_a_delegation_budget(cli, tmp_path, adb_env, published, tflite):
    """The issue's 'done when': the binary fetched once from the loopback server, a cpu and a gpu row with the
    delegated share, and a min_delegated budget that fails with exit 1 and a JUnit failure."""
    with StandInDevice(tmp_path / "phone", gpu="MEAN") as dev:  # its GPU delegate refuses MEAN
        _connect(dev, adb_env["port"])

        def listed():
            return {d["device"]: d for d in cli("devices", "--json").json()["devices"]}[f"adb:{dev.serial}"]
        row = listed()
        assert row["big_cores"] == "f0" and row["benchmark_model"] == f"fetched on first use from {published.url}" \
            f"{BIN_PATH}"
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--accelerator", "cpu,gpu", "--runs", "5",
                "--min-secs", "0")
        assert r.exit_code == 0, r.stderr
        assert published.hits == [BIN_PATH] and "fetched LiteRT" in r.stderr
        cache = _cache(tmp_path)
        assert (cache / "benchmark_model").is_file() and len((cache / "benchmark_model.sha256").read_text()) > 64
        assert listed()["benchmark_model"].startswith(f"cached {cache / 'benchmark_model'}")
        assert "TfLiteGpuDelegateV2 took" in r.stdout and "MEAN (Operation is not supported.)" in r.stdout
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--accelerator", "cpu,gpu", "--runs", "5",
                "--min-secs", "0", "--json")
        assert r.exit_code == 0, r.stderr
        assert published.hits == [BIN_PATH]  # the cached copy, checked, not fetched again
        cpu, gpu = r.json()["bench"]
        assert (cpu["accelerator"], gpu["accelerator"]) == ("cpu", "gpu")
        assert cpu["delegation"]["share_ops"] == 1.0 and cpu["delegation"]["delegate"] == "TfLiteXNNPackDelegate"
        g = gpu["delegation"]
        assert g["ops_total"] == cpu["delegation"]["ops_total"] and 0.5 < g["share_ops"] < 1.0
        assert g["fallback"] == [{"op": "MEAN", "reason": "Operation is not supported."}]
        runs = [c for c in dev.commands if "--graph=" in c]
        assert "--use_gpu=true" in runs[-1] and "--use_gpu=true" not in runs[-2]

        budget = tmp_path / "phone.toml"
        budget.write_text(f'[defaults]\ndevice = "adb:{dev.serial}"\naccelerators = ["cpu", "gpu"]\nruns = 5\n'
                          f'min_secs = 0\n\n[[model]]\npath = "{tflite}"\nmin_delegated = 0.95\n\n'
                          '[model.gpu]\nmin_delegated = 1.0\n')
        r = cli("bench", "--budget", budget, "--junit", tmp_path / "j.xml", "--json")
        assert r.exit_code == 1, r.stderr
        checks = {c["check"]: c for c in r.json()["budgets"]["checks"]}
        assert checks["delegated ops (cpu)"]["ok"] and not checks["delegated ops (gpu)"]["ok"]
        assert checks["delegated ops (gpu)"]["measured"] == pytest.approx(g["share_ops"])
        junit = (tmp_path / "j.xml").read_text()
        assert junit.count("<failure") == 1 and 'name="delegated ops (gpu)"' in junit
        # the same budget met when the phone's GPU takes every op
    with StandInDevice(tmp_path / "phone2", gpu="all") as dev2:
        _connect(dev2, adb_env["port"])
        budget.write_text(budget.read_text().replace(dev.serial, dev2.serial))
        r = cli("bench", "--budget", budget, "--json")
        assert r.exit_code == 0, r.stderr
        assert all(c["ok"] for c in r.json()["budgets"]["checks"])
        assert published.hits == [BIN_PATH]


@needs_adb
def test_binary_refusals(cli, tmp_path, adb_env, published, tflite, monkeypatch):
    with StandInDevice(tmp_path / "phone") as dev:
        _connect(dev, adb_env["port"])
        run = ("bench", tflite, "--device", f"adb:{dev.serial}", "--runs", "3", "--min-secs", "0")
        # a download cut short: one line, exit 2, nothing cached
        published.short.add(BIN_PATH)
        assert_one_line_error(cli(*run), "download cut short", "--benchmark-binary")
        assert not _cache(tmp_path).exists() or not any(_cache(tmp_path).iterdir())
        published.short.clear()
        # offline: says what to do
        monkeypatch.setenv("ODML_LITERT_BINARIES_URL", "http://127.0.0.1:9")
        assert_one_line_error(cli(*run), "cannot fetch benchmark_model", "offline", "--benchmark-binary")
        monkeypatch.setenv("ODML_LITERT_BINARIES_URL", published.url)
        assert cli(*run).exit_code == 0
        # a cached copy that changed since it was fetched is refused
        exe = _cache(tmp_path) / "benchmark_model"
        exe.write_bytes(exe.read_bytes() + b"\n# changed\n")
        assert_one_line_error(cli(*run), "sha256", "no longer matches", "refusing")
    with StandInDevice(tmp_path / "phone32", abi="armeabi-v7a") as old:
        _connect(old, adb_env["port"])
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{old.serial}"), "armeabi-v7a",
                              "publishes no benchmark_model")
    assert len(published.hits) == 2  # the cut-short try and the good one


@needs_adb
def test_accelerator_refusals(cli, tmp_path, adb_env, tflite):
    binary = ("--benchmark-binary", adb_env["binary"], "--runs", "3", "--min-secs", "0")
    with StandInDevice(tmp_path / "phone", gpu="none") as dev:
        _connect(dev, adb_env["port"])
        # a delegate the phone lacks: benchmark_model falls back to the CPU silently; odml says so
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{dev.serial}:gpu", *binary),
                              "ran nothing on the GPU", "unsupported on this platform")
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{dev.serial}", "--accelerator", "npu", *binary),
                              "ran nothing on the NPU")
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{dev.serial}", "--accelerator", "cpu,dsp",
                                  *binary), "--accelerator 'dsp'", "unknown accelerator")
        assert_one_line_error(cli("bench", tflite, "--device", f"adb:{dev.serial}:tpu", *binary),
                              "unknown accelerator 'tpu'")
        budget = tmp_path / "b.toml"
        budget.write_text(f'[defaults]\ndevice = "adb:{dev.serial}"\naccelerators = ["cpu"]\n\n[[model]]\n'
                          f'path = "{tflite}"\n[model.gpu]\nmin_delegated = 1.0\n')
        assert_one_line_error(cli("bench", "--budget", budget), "[model.gpu]", "not measured")
        budget.write_text(f'[defaults]\ndevice = "adb:{dev.serial}"\n\n[[model]]\npath = "{tflite}"\n'
                          '[model.gpu]\nmin_delegated = 1.0\n')
        assert_one_line_error(cli("bench", "--budget", budget), "[model.gpu]", "not measured")
        assert not list(dev.tmp.iterdir())
    assert_one_line_error(cli("bench", tflite, "--accelerator", "gpu"), "host", "no gpu accelerator")


@needs_adb
def test_big_cores_heat_and_the_profile_by_block(cli, tmp_path, adb_env, tflite, carded):
    from odml.zoo.card import ModelCard

    assert ModelCard.from_tflite(Path(tflite).read_bytes()) is None  # a file without a card: layers, no blocks
    with StandInDevice(tmp_path / "phone", heat=12000) as dev:  # each run warms the phone by 12 C
        _connect(dev, adb_env["port"])
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "0", "--op-profile", "--json")
        assert r.exit_code == 0, r.stderr
        res = r.json()["bench"][0]
        assert res["core_mask"] == "f0" and res["pinned"] == "big cores"  # cpu4-7 are the fast ones
        assert (tmp_path / "phone" / "taskset.log").read_text().split() == ["f0"]
        assert res["thermal"]["zone"] == "thermal_zone0" and res["thermal"]["throttle_risk"]
        assert res["thermal"]["after_c"] - res["thermal"]["before_c"] == pytest.approx(12.0)
        ob = res["op_breakdown"]
        assert ob["units"] == [] and len(ob["layers"]) >= 5
        assert len(ob["ops"]) == res["delegation"]["ops_total"]
        r = cli("bench", tflite, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "0")
        assert "may have throttled" in r.stderr and "pinned to the big cores" in r.stdout
        # a model whose card says its spec: the phone's profile summed per block, in the order they run
        r = cli("bench", carded, "--device", f"adb:{dev.serial}", "--benchmark-binary", adb_env["binary"],
                "--runs", "5", "--min-secs", "0", "--op-profile", "--json")
        assert r.exit_code == 0, r.stderr
        units = [u["unit"] for u in r.json()["bench"][0]["op_breakdown"]["units"]]
        assert units[0] == "stem" and units[-1] == "head" and units[1:-1] == [f"block{i}" for i in
                                                                               range(len(units) - 2)]


def _exported(tmp_path_factory, classes: int, quantize: str):
    """An untrained tiny MobileNetEdgeTPUV2 exported by odml at 32 px: its card says its spec and classes."""
    from typer.testing import CliRunner

    from odml.cli.app import app

    d = tmp_path_factory.mktemp(f"exported{classes}")
    r = CliRunner().invoke(app, ["export", "mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--classes",
                                 str(classes), "--quantize", quantize, "--calibration", "random", "--out", str(d)])
    assert r.exit_code == 0, r.output
    return d / "mobilenet_edgetpu_v2_tiny_int8.tflite"


@pytest.fixture(scope="module")
def carded(tmp_path_factory):
    return _exported(tmp_path_factory, 4, "fp16,int8")


def test_host_op_profile_by_block(cli, carded):
    r = cli("bench", carded, "--op-profile", "--runs", "10", "--min-secs", "0", "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["bench"][0]
    ob = res["op_breakdown"]
    units = [u["unit"] for u in ob["units"]]
    assert units[0] == "stem" and units[-1] == "head" and units[1:-1] == [f"block{i}" for i in range(len(units) - 2)]
    assert ob["unmeasured"] == 0 and all(o["ms"] is not None and o["unit"] for o in ob["ops"])
    assert ob["sum_ms"] == pytest.approx(sum(u["ms"] for u in ob["units"]))
    assert ob["sum_ms"] > 0 and ob["bench_ms"] == res["median_ms"] and ob["invoke_overhead_ms"] > 0
    assert "CONV_2D" in {o["op"] for o in ob["ops"]}
    text = cli("bench", carded, "--op-profile", "--runs", "10", "--min-secs", "0")
    assert "time per block" in text.stdout and "of the benchmark's" in text.stdout
    # fp16 weights reach their convolutions through DEQUANTIZE ops LiteRT runs once at load: those cost nothing
    # per inference, and each convolution is timed with its weights as constants
    fp16 = cli("bench", carded.with_name("mobilenet_edgetpu_v2_tiny_fp16.tflite"), "--op-profile", "--runs", "10",
               "--min-secs", "0", "--json").json()["bench"][0]["op_breakdown"]
    deq = [o for o in fp16["ops"] if o["op"] == "DEQUANTIZE"]
    convs = [o for o in fp16["ops"] if o["op"] == "CONV_2D"]
    assert len(deq) >= len(convs) > 10 and fp16["folded"] == len(deq)
    assert all(o["folded"] and o["ms"] == 0 for o in deq) and all(o["ms"] > 0 for o in convs)


def test_edgetpu_compiler_log_says_what_ran_where(cli, carded, tmp_path, monkeypatch):
    """With edgetpu_compiler on the PATH (a stand-in printing the compiler's log format), export's Edge TPU
    artefact says how many ops run on the Edge TPU and which stay on the CPU, and why."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "edgetpu_compiler"
    fake.write_text("""#!/bin/sh
out=.; while [ $# -gt 1 ]; do case "$1" in -o) out="$2"; shift;; esac; shift; done
m="$1"; b=$(basename "$m" .tflite); cp "$m" "$out/${b}_edgetpu.tflite"
cat <<EOF
Edge TPU Compiler version 16.0.384591198
Model compiled successfully in 120 ms.
Number of operations that will run on Edge TPU: 60
Number of operations that will run on CPU: 3

Operator                       Count      Status

CONV_2D                        58         Mapped to Edge TPU
ADD                            2          Mapped to Edge TPU
MEAN                           1          More than one subgraph is not supported
QUANTIZE                       1          Operation is working on an unsupported data type
DEQUANTIZE                     1          Operation is working on an unsupported data type
EOF
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    r = cli("export", "mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--classes", "4", "--target", "edgetpu", "--calibration", "random",
            "--out", tmp_path / "tpu", "--json")
    assert r.exit_code == 0, r.stderr
    art = next(a for a in r.json()["export"]["artifacts"] if a["precision"] == "int8")
    d = art["edgetpu"]["compiler"]["delegation"]
    assert (d["ops_delegated"], d["ops_total"]) == (60, 63) and d["share_ops"] == pytest.approx(60 / 63)
    assert [f["op"] for f in d["fallback"]] == ["MEAN", "QUANTIZE", "DEQUANTIZE"]
    assert d["fallback"][0]["reason"] == "More than one subgraph is not supported"
    assert json.loads((tmp_path / "tpu" / "export.json").read_text())  # the run's record is written


@pytest.mark.fast
def test_the_phone_budget_example_loads():
    from odml.devices.budgets import load_budgets

    bf = load_budgets(Path(__file__).parents[1] / "examples" / "budgets-phone.toml")
    (m,) = bf.models
    assert bf.defaults["accelerators"] == ["cpu", "gpu"] and m.min_delegated == 0.95
    assert m.per_accelerator["gpu"].min_delegated == 1.0 and m.per_accelerator["gpu"].max_latency_ms == 8.0


@pytest.fixture(scope="module")
def digits10(tmp_path_factory):
    """digits' 10 classes, untrained: chance accuracy."""
    return _exported(tmp_path_factory, 10, "int8")


@needs_adb
def test_ovic_per_phone_row_and_its_budget(cli, tmp_path, adb_env, digits10):
    """A phone reports a summary, not each run: the OVIC score of a row takes its per-inference figure for
    every image and the host's predictions; an OVIC budget is checked per accelerator."""
    with StandInDevice(tmp_path / "phone") as dev:
        _connect(dev, adb_env["port"])
        r = cli("bench", digits10, "--device", f"host,adb:{dev.serial}", "--accelerator", "cpu", "--runs", "5",
                "--min-secs", "0", "--data", "digits", "--ovic", "--benchmark-binary", adb_env["binary"], "--json")
        assert r.exit_code == 0, r.stderr
        host, phone = r.json()["bench"]
        hc, pc = host["classification"], phone["classification"]
        assert "latency_from" not in hc and pc["latency_from"] == f"adb:{dev.serial} (cpu), per inference"
        assert pc["accuracy"] == hc["accuracy"] and pc["images"] == hc["images"] > 300
        assert pc["mean_latency_ms"] == pytest.approx(phone["median_ms"])
        assert pc["ovic"]["within_budget"] == pc["ovic"]["images"]  # a ~0.1 ms model fits 33 ms per image
        budget = tmp_path / "ovic.toml"
        budget.write_text(f'[defaults]\ndevice = "adb:{dev.serial}"\naccelerators = ["cpu", "gpu"]\ndata = "digits"\n'
                          f'runs = 5\nmin_secs = 0\nbenchmark_binary = "{adb_env["binary"]}"\n\n[[model]]\n'
                          f'path = "{digits10}"\nmin_ovic_score = 0.9\n')
        r = cli("bench", "--budget", budget, "--json")
        assert r.exit_code == 1, r.stderr  # an untrained classifier: chance accuracy, far from 0.9
        checks = [c["check"] for c in r.json()["budgets"]["checks"]]
        assert checks == ["OVIC score (33 ms) (cpu)", "OVIC score (33 ms) (gpu)"]
