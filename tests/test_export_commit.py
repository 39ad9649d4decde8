"""odml export commits its folder whole: the folder holds exactly what the
report lists (no work file) after every format, precision and target; a
second export replaces the first whole; a folder of the user's files is
refused; one export at a time writes a folder. (Kills at random moments:
tests/bench/kill9.py --verb export.)"""

import json
import os
import subprocess
import sys

import pytest
from helpers import assert_one_line_error

TINY = ("mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--width", "0.25", "--classes", "10",
        "--calibration", "random")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def _export(cli, out, *args):
    r = cli("export", *TINY, *args, "--out", out, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()["export"]


@pytest.mark.parametrize("quantize,fmt,target", [
    ("fp32", "tflite", "cpu"),
    ("fp16", "tflite,onnx", "cpu"),
    ("dynamic", "tflite", "cpu"),
    ("int8", "tflite", "cpu"),
    ("int8", "tflite", "edgetpu"),
])
def test_the_folder_holds_what_the_report_lists_and_nothing_else(cli, tmp_path, quantize, fmt, target):
    out = tmp_path / "e"
    rep = _export(cli, out, "--quantize", quantize, "--format", fmt, "--target", target)
    listed = sorted(rep["files"])
    assert _listing(out) == listed, "a work file was left in --out"
    suffix = "_edgetpu" if target == "edgetpu" else ""
    want = {f"mobilenet_edgetpu_v2_tiny_{quantize}{suffix}.tflite", "export.json"}
    want |= {"mobilenet_edgetpu_v2_tiny.onnx"} if "onnx" in fmt else set()
    assert want <= set(listed) and not any(n.endswith(".txt") or "with_metadata" in n for n in listed)
    assert json.loads((out / "export.json").read_text())["files"] == listed
    for a in rep["artifacts"]:
        assert (out / a["file"]).stat().st_size == a["size_bytes"]
    assert not [p.name for p in tmp_path.iterdir() if p.name != "e"], "staging or lock left beside --out"


def test_a_second_export_replaces_the_first_whole(cli, tmp_path):
    out = tmp_path / "e"
    _export(cli, out, "--quantize", "fp32,int8", "--format", "tflite,onnx")
    first = _listing(out)
    assert len(first) == 5  # three files, export.json, report.html
    rep = _export(cli, out, "--quantize", "fp16")
    assert _listing(out) == sorted(rep["files"]) == ["export.json", "mobilenet_edgetpu_v2_tiny_fp16.tflite",
                                                            "report.html"]
    # an export that stops while staging (a file too big for the process' limit) leaves the earlier one whole
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    p = subprocess.run([sys.executable, "-c", "from odml.cli.app import main; main()", "export", *TINY,
                        "--quantize", "fp32", "--out", str(out)], capture_output=True, text=True,
                       preexec_fn=small_files)
    assert p.returncode == 2 and "cannot write" in p.stderr, p.stderr
    assert _listing(out) == ["export.json", "mobilenet_edgetpu_v2_tiny_fp16.tflite", "report.html"]
    assert not [q.name for q in tmp_path.iterdir() if q.name != "e"]


def test_a_folder_of_other_files_is_refused_and_left_alone(cli, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_one_line_error(cli("export", *TINY, "--quantize", "fp32", "--out", out), "mine", "notes.txt",
                          "new or empty")
    assert _listing(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    # an earlier export with a file of the user's added is not an export any more: refused too
    exp = tmp_path / "e"
    _export(cli, exp, "--quantize", "fp32")
    (exp / "extra.bin").write_bytes(b"x")
    assert_one_line_error(cli("export", *TINY, "--quantize", "fp16", "--out", exp), "extra.bin")
    assert "mobilenet_edgetpu_v2_tiny_fp32.tflite" in _listing(exp)


def test_a_second_export_into_the_same_folder_is_refused_naming_the_first(cli, tmp_path):
    out = tmp_path / "e"
    lock = tmp_path / ".e.lock"
    # another live process holds the folder's lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom odml.exporters.export import export_lock\nfrom pathlib import Path\n"
        f"with export_lock(Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = cli("export", *TINY, "--quantize", "fp32", "--out", out)
        assert_one_line_error(r, "another odml export", f"pid {holder.pid}")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # the lock of a killed export is taken over
    assert lock.exists()
    _export(cli, out, "--quantize", "fp32")
    assert not lock.exists() and (out / "export.json").is_file()


def test_a_kill_before_the_exchange_leaves_the_earlier_export(tmp_path):
    """The commit itself: a staged folder swapped in one step, and the
    staging folder of a killed export swept by the next one."""
    from odml.files import replace_folder, temp_dir_beside

    out = tmp_path / "e"
    out.mkdir()
    (out / "a.tflite").write_bytes(b"old")
    stage = temp_dir_beside(out, "export")
    (stage / "b.tflite").write_bytes(b"new")
    out.chmod(0o750)
    replace_folder(stage, out)
    assert _listing(out) == ["b.tflite"] and not stage.exists()
    assert out.stat().st_mode & 0o777 == 0o750  # the folder's permissions, not the private staging folder's
    new = tmp_path / "new"
    stage = temp_dir_beside(new, "export")
    replace_folder(stage, new)
    mask = os.umask(0)
    os.umask(mask)
    assert new.stat().st_mode & 0o777 == 0o777 & ~mask  # as mkdir would make it
    # a killed exporter's staging folder (its pid is gone) is removed by the next one
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f".e.export-{dead.pid}-abc"
    left.mkdir()
    nxt = temp_dir_beside(out, "export")
    assert not left.exists() and nxt.exists() and os.path.basename(nxt).startswith(f".e.export-{os.getpid()}-")


def test_an_out_folder_given_as_a_link_stays_a_link(cli, tmp_path):
    real = tmp_path / "real"
    _export(cli, real, "--quantize", "fp32")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    rep = _export(cli, link, "--quantize", "fp16")
    assert link.is_symlink() and link.resolve() == real.resolve() and rep["out_dir"] == str(link)
    assert _listing(real) == ["export.json", "mobilenet_edgetpu_v2_tiny_fp16.tflite",
                                                            "report.html"]
