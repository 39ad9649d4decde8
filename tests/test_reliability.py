"""Reliability under the faults long runs meet (issue 26): a full disk (a
file size limit stands in for it) and an unwritable output folder get a
one-line error naming the file, and nothing half-written is left behind."""

import json
import resource
import subprocess
import sys

from helpers import assert_one_line_error


def _odml(args, limit=None, timeout=600):
    def lim():
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = subprocess.run([sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, preexec_fn=lim)

    class R:
        exit_code, stdout, stderr = p.returncode, p.stdout, p.stderr

    return R


def _left(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_a_full_disk_while_exporting_is_one_line_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    args = ["export", "mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--width", "0.5", "--quantize", "fp32",
            "--calibration", "random", "--out", out]
    for extra in (["--no-metadata"], []):  # the model file, and the metadata written into it
        r = _odml(args + extra, limit=200_000)  # the fp32 file is about 1.5 MB
        assert_one_line_error(r, "cannot write", "File too large", ".tflite")
        assert _left(tmp_path) == []  # no output folder, no staging folder, no temporary file
    r = _odml(args + ["--no-metadata"])  # with room, the same command works
    assert r.exit_code == 0, r.stderr
    assert (out / "mobilenet_edgetpu_v2_tiny_fp32.tflite").is_file()


def test_records_and_documents_on_a_full_disk(tmp_path):
    """odml's writers themselves: a JSONL record that does not fit leaves the
    file as it was; an atomic write leaves neither the file nor its temporary."""
    code = """
import sys, resource
from pathlib import Path
from odml.errors import OutputError
from odml.files import append_jsonl, write_json_atomic
d = Path(sys.argv[1])
append_jsonl(d / "r.jsonl", {"n": 1})
resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))
for f in (lambda: append_jsonl(d / "r.jsonl", {"big": "x" * 1000}), lambda: write_json_atomic(d / "doc.json", ["y" * 1000])):
    try:
        f()
    except OutputError as e:
        print(e)
"""
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and len(lines) == 2, (p.stdout, p.stderr)
    assert lines[0].startswith(f"{tmp_path / 'r.jsonl'}: cannot write: File too large")
    assert lines[1].startswith(f"{tmp_path / 'doc.json'}: cannot write: File too large")
    assert [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()] == [{"n": 1}]
    assert _left(tmp_path) == ["r.jsonl"]


def test_an_output_path_under_a_file_is_one_line(cli, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    r = cli("zoo", "show", "mobilenet_edgetpu_v2_tiny", "--out", tmp_path / "file" / "spec.json")
    assert_one_line_error(r, "spec.json")
