"""odml bench on the host: real LiteRT, statistics that hang together, no
TensorFlow import, one-line errors. (adb and Edge TPU devices: issue 4.)"""

import subprocess
import sys

import pytest
from helpers import assert_one_line_error


@pytest.fixture(scope="module")
def tflite(tmp_path_factory):
    from odml.exporters.tflite import convert
    from odml.zoo import create_model, create_spec

    d = tmp_path_factory.mktemp("bench")
    model = create_model(create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32, width=0.25))
    path = d / "tiny_fp32.tflite"
    path.write_bytes(convert(model, "fp32"))
    return path


def test_statistics(cli, tflite):
    r = cli("bench", tflite, "--runs", "40", "--min-secs", "0", "--warmup", "2", "--json")
    assert r.exit_code == 0, r.stderr
    (res,) = r.json()["bench"]
    assert res["count"] >= 40 and res["device"] == "host" and res["threads"] == 1
    assert res["min_ms"] <= res["median_ms"] <= res["p90_ms"] <= res["p99_ms"] <= res["max_ms"]
    assert res["min_ms"] <= res["mean_ms"] <= res["max_ms"] and res["std_ms"] >= 0
    assert res["cv"] == pytest.approx(res["std_ms"] / res["mean_ms"])
    assert res["init_ms"] > 0 and res["first_ms"] > 0 and res["peak_rss_mb"] > 10
    assert res["size_bytes"] == tflite.stat().st_size


def test_min_secs_extends_the_run(cli, tflite):
    r = cli("bench", tflite, "--runs", "1", "--min-secs", "0.3", "--json")
    res = r.json()["bench"][0]
    assert res["count"] > 1 and res["count"] * res["mean_ms"] >= 250


def test_several_models_pinning_and_no_xnnpack(cli, tflite, tmp_path):
    other = tmp_path / "copy.tflite"
    other.write_bytes(tflite.read_bytes())
    r = cli("bench", tflite, other, "--runs", "10", "--min-secs", "0", "--cpus", "0", "--no-xnnpack")
    assert r.exit_code == 0, r.stderr
    assert "tiny_fp32.tflite" in r.stdout and "copy.tflite" in r.stdout and "XNNPACK off" in r.stdout


def test_bench_does_not_import_tensorflow(tflite):
    code = ("import sys\nfrom odml.devices.host import HostOptions, bench_host\n"
            f"r = bench_host({str(tflite)!r}, HostOptions(runs=5, min_secs=0))\n"
            "assert r['count'] >= 5\n"
            "print(','.join(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_bad_input(cli, tmp_path, tflite):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(tflite.read_bytes()[:500])
    assert_one_line_error(cli("bench", bad), str(bad), "truncated")
    assert_one_line_error(cli("bench", tmp_path / "missing.tflite"), "not found")
    assert_one_line_error(cli("bench", tflite, "--device", "pixel9"), "unknown device")
    assert_one_line_error(cli("bench", tflite, "--cpus", "999"), "not available")
    assert_one_line_error(cli("bench", tflite, "--threads", "0"), "--threads")
