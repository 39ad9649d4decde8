"""Reliability under the faults long runs meet (issue 26): a full disk (a
file size limit stands in for it) and an unwritable output folder get a
one-line error naming the file, and nothing half-written is left behind; a
second run on a held folder is refused naming the first; two writers of one
record file; `odml train` killed at random moments. (kill -9 of search,
compress and calibration: their own test files; many kills per verb:
tests/bench/kill9.py.)"""

import json
import os
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
        assert_one_line_error(r, "cannot write", "File too large", f"{out / 'mobilenet_edgetpu_v2_tiny_fp32.tflite'}")
        assert ".export-" not in r.stderr  # the file the user asked for, not odml's staging copy
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


def _cmd(*args):
    return [sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)]


def test_a_second_search_on_the_same_folder_is_refused_naming_the_first(cli, tmp_path):
    import time

    from test_search import TINY

    space = tmp_path / "tiny.json"
    space.write_text(json.dumps(TINY))
    out = tmp_path / "run"
    args = ["search", "--space", space, "--data", "digits", "--target-ms", "0.05", "--epochs", "1", "--runs", "10",
            "--trials", "50", "--strategy", "random", "--out", out]
    first = subprocess.Popen(_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "trials.jsonl").is_file():  # the folder is held by then
            time.sleep(0.2)
            assert first.poll() is None
        assert_one_line_error(cli(*args), str(out), f"pid {first.pid}")
    finally:
        first.kill()
        first.wait()


def test_two_writers_of_one_record_file_leave_every_line_whole(tmp_path):
    """A latency cache shared by two searches: both append at once."""
    code = """
import sys
from odml.files import append_jsonl
for i in range(400):
    append_jsonl(sys.argv[1], {"writer": sys.argv[2], "i": i, "pad": "x" * (i % 97) * 40})
"""
    f = tmp_path / "cache.jsonl"
    ps = [subprocess.Popen([sys.executable, "-c", code, str(f), w]) for w in ("a", "b")]
    assert all(p.wait(timeout=300) == 0 for p in ps)
    recs = [json.loads(line) for line in f.read_text().splitlines()]
    for w in ("a", "b"):
        assert [r["i"] for r in recs if r["writer"] == w] == list(range(400))


def test_train_killed_at_random_moments_leaves_no_half_model(tmp_path):
    """kill -9 during `odml train` (twice, at seeded random moments): no
    model file or a whole one, every file complete; the rerun trains it."""
    import random
    import signal
    import time

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "bench"))
    from kill9 import check_files

    spec = tmp_path / "spec.json"
    assert _odml(["zoo", "show", "mobilenet_edgetpu_v2_tiny", "--width", "0.25", "--input-size", "32", "--classes",
                  "10", "--out", spec]).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    args = _cmd("train", spec, "--data", "digits", "--epochs", "1", "--out", out / "model.keras")
    # a second train into the same file while the first is alive: refused, naming it
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / ".model.keras.lock").is_file():
            time.sleep(0.1)
            assert first.poll() is None
        second = _odml(args[3:])
        assert_one_line_error(second, "model.keras", f"pid {first.pid}", "training into this file")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    rng = random.Random(0)
    for _ in range(2):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(3, 10))
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        assert check_files(out) == []
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert check_files(out) == [] and (out / "model.keras").is_file()
    assert not [n for n in os.listdir(out) if n.endswith(".lock")]  # the killed runs' lock: taken over, removed


def test_what_a_killed_writer_left_is_swept_by_the_next_write(tmp_path):
    """A kill -9 during a save leaves its temporary (named with the writer's
    pid); the next write of that file, or the next export beside it, removes
    it unless the writer is still alive."""
    from odml.files import temp_dir_beside, write_json_atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (dead.pid, live.pid):
            (tmp_path / f".model.tmp-{pid}.keras").write_bytes(b"half a model")
            (tmp_path / f".state.tmp-{pid}.json").write_text('{"half": ')
            (tmp_path / f".out.export-{pid}-abc").mkdir()
            (tmp_path / f".out.export-{pid}-abc" / "m.tflite").write_bytes(b"half")
        (tmp_path / ".model.tmp-notapid.keras").write_bytes(b"not ours to judge")
        write_json_atomic(tmp_path / "state.json", {"a": 1})
        write_json_atomic(tmp_path / "model.keras", {"stand-in": True})
        stage = temp_dir_beside(tmp_path / "out", "export")
        left = sorted(os.listdir(tmp_path))
        assert left == sorted([f".model.tmp-{live.pid}.keras", f".state.tmp-{live.pid}.json",
                               f".out.export-{live.pid}-abc", ".model.tmp-notapid.keras", stage.name,
                               "model.keras", "state.json"]), left
    finally:
        live.kill()
        live.wait()
