"""Crash consistency (issue 26): start a long odml command, kill -9 it at a
random moment, check every file it left, start it again; many times; then
let it finish and check that nothing finished was lost or done twice.

    python tests/bench/kill9.py --verb search --kills 20 [--seed 0] [--out runs/kill9]
    python tests/bench/kill9.py --verb all --kills 20
    python tests/bench/kill9.py --verb export --kills 20

Verbs: search (trials.jsonl: every finished trial kept, none twice),
compress (results.jsonl: every finished student kept, none twice),
calibrate (measurements.jsonl: no block or model measured twice) and train
(a clean restart: never a half-written model) and export (the folder is
absent or one complete export, never a mix of two, no work file). After every kill each file
present must be complete: JSON parses, every JSONL line but a torn last one
parses, a .keras loads, a .tflite passes odml's verification. Prints one
line per kill and a summary; writes <out>/<verb>.json. Exit 1 on any
problem.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_search import TINY  # noqa: E402  (the tiny space of the search tests)


def odml(*args) -> list[str]:
    return [sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)]


class Verb:
    """A command, the records that say what it finished, and what it must end with."""
    records: str | None = None
    key: str = ""
    window = (3.0, 40.0)  # seconds after the start when the kill comes
    during: str | None = None  # a glob in the output ({pid}: the process's): every other kill comes while it exists
    during_in = "out"  # or "root": where that glob looks
    keep_finished = False  # a run that finished before its kill: start the next from nothing
    during_delay = 0.2  # the kill comes this long at most after the glob appears

    def __init__(self, root: Path):
        self.root = root
        self.out = root / "out"

    def prepare(self) -> None:
        pass

    def command(self) -> list[str]:
        raise NotImplementedError

    def finished(self) -> list[str]:
        """The keys of the records finished so far."""
        from odml.files import read_jsonl

        return [str(r[self.key]) for r in read_jsonl(self.out / self.records)] if self.records else []

    def final(self) -> list[str]:
        """Problems of the finished run."""
        return []

    def state(self) -> list[str]:
        """Problems of what a kill left, beyond each file being whole."""
        return []

    def describe(self) -> str:
        """What a kill left, in a word or two (for the log)."""
        return ""


class Search(Verb):
    records, key = "trials.jsonl", "trial_id"

    def prepare(self) -> None:
        (self.root / "tiny.json").write_text(json.dumps(TINY))

    def command(self) -> list[str]:
        return odml("search", "--space", self.root / "tiny.json", "--data", "digits", "--target-ms", "0.05",
                    "--epochs", "1", "--runs", "10", "--trials", "10", "--strategy", "random", "--out", self.out)

    def final(self) -> list[str]:
        done = self.finished()
        return [] if len(done) == 10 else [f"{len(done)} trials at the end, not 10"]


class Compress(Verb):
    records, key = "results.jsonl", "label"
    window = (3.0, 60.0)

    def prepare(self) -> None:
        teacher = self.root / "teacher.keras"
        if not teacher.is_file():
            spec = self.root / "spec.json"
            subprocess.run(odml("zoo", "show", "mobilenet_edgetpu_v2_tiny", "--width", "0.35", "--input-size", "32",
                                "--classes", "10", "--out", spec), check=True, capture_output=True)
            subprocess.run(odml("train", spec, "--data", "digits", "--epochs", "2", "--out", teacher), check=True,
                           capture_output=True)

    def command(self) -> list[str]:
        return odml("compress", self.root / "teacher.keras", "--data", "digits", "--students",
                    "mobilenet_edgetpu_v2_tiny@0.25,mobilenet_edgetpu_v2_tiny@0.3", "--epochs", "3", "--runs", "5",
                    "--out", self.out)

    def final(self) -> list[str]:
        done = self.finished()
        return [] if len(done) == 3 and (self.out / "report.json").is_file() else [f"results at the end: {done}"]


class Calibrate(Verb):
    records, key = "measurements.jsonl", "key"

    def prepare(self) -> None:
        (self.root / "tiny.json").write_text(json.dumps(TINY))

    def command(self) -> list[str]:
        return odml("calibrate", "--space", self.root / "tiny.json", "--precision", "fp32", "--minutes", "0.5",
                    "--runs", "10", "--out", self.out)

    def final(self) -> list[str]:
        return [] if (self.out / "predictor.json").is_file() else ["no predictor.json at the end"]


class Train(Verb):
    window = (3.0, 30.0)
    during = ".model.tmp-{pid}*"  # the model this process is saving (then renamed into place)

    def prepare(self) -> None:
        spec = self.root / "spec.json"
        subprocess.run(odml("zoo", "show", "mobilenet_edgetpu_v2_tiny", "--width", "0.25", "--input-size", "32",
                            "--classes", "10", "--out", spec), check=True, capture_output=True)

    def command(self) -> list[str]:
        self.out.mkdir(parents=True, exist_ok=True)
        return odml("train", self.root / "spec.json", "--data", "digits", "--epochs", "3", "--out",
                    self.out / "model.keras")

    def final(self) -> list[str]:
        return [] if (self.out / "model.keras").is_file() else ["no model.keras at the end"]


class Export(Verb):
    """Exports of two different sets of files, one after the other, into one
    folder: after every kill the folder is absent, or one complete export
    (its report lists exactly what the folder holds, each file whole), never a
    mix of the two, and no work file."""
    window = (2.0, 12.0)
    during = ".out.export-{pid}-*/.export.tmp-*"  # every other kill at the commit: the staged report being
    during_in = "root"                              # written, the folder swapped in milliseconds later
    keep_finished = True  # a finished export stays: the next one replaces it
    during_delay = 0.003
    SETS = (("fp32", "tflite"), ("fp32,int8", "tflite,onnx"))

    def __init__(self, root: Path):
        super().__init__(root)
        self.runs = 0
        self.model = "mobilenet_edgetpu_v2_tiny"

    def command(self) -> list[str]:
        quantize, fmt = self.SETS[self.runs % 2]
        self.runs += 1
        return odml("export", self.model, "--input-size", "32", "--width", "0.25", "--classes", "10",
                    "--calibration", "random", "--quantize", quantize, "--format", fmt, "--out", self.out)

    def state(self) -> list[str]:
        if not self.out.exists():
            return []
        report = self.out / "export.json"
        if not report.is_file():
            return [f"a folder without its report: {sorted(p.name for p in self.out.iterdir())}"]
        r = json.loads(report.read_text())
        have = sorted(p.name for p in self.out.iterdir())
        problems = [] if have == sorted(r["files"]) else [f"holds {have}, its report lists {sorted(r['files'])}"]
        for a in r["artifacts"]:
            f = self.out / a["file"]
            if not f.is_file() or f.stat().st_size != a["size_bytes"]:
                problems.append(f"{a['file']}: not the file its report describes")
        files = sorted(f for f in r["files"] if f != "export.json")
        known = [sorted(self._files(q, fm)) for q, fm in self.SETS]
        return problems + ([] if files in known else [f"a mix of two exports: {files}"])

    def describe(self) -> str:
        if not (self.out / "export.json").is_file():
            return "no export yet"
        files = json.loads((self.out / "export.json").read_text())["files"]
        return f"the export of {self.SETS[['onnx' in f for f in files].count(True)][0]}"

    def _files(self, quantize: str, fmt: str) -> list[str]:
        return [f"{self.model}_{q}.tflite" for q in quantize.split(",")] + \
            ([f"{self.model}.onnx"] if "onnx" in fmt else [])

    def final(self) -> list[str]:
        left = [p.name for p in self.root.glob(".out.*")]
        return self.state() + ([f"left beside the folder: {left}"] if left else []) + \
            ([] if (self.out / "export.json").is_file() else ["no export at the end"])


VERBS = {"search": Search, "compress": Compress, "calibrate": Calibrate, "train": Train, "export": Export}


def check_files(folder: Path) -> list[str]:
    """Every file in ``folder`` complete (temporary files of a killed write are listed apart)."""
    from odml.errors import OdmlError
    from odml.flatbuffer import parse_tflite

    bad = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or ".tmp-" in p.name or p.name.startswith(".") or "checkpoints" in p.parts:
            continue
        try:
            if p.suffix == ".json":
                json.loads(p.read_text())
            elif p.suffix == ".jsonl":
                lines = p.read_text().splitlines()
                for i, line in enumerate(lines):
                    try:
                        json.loads(line)
                    except ValueError:
                        if i != len(lines) - 1:  # a torn last line is a killed append, skipped by readers
                            raise
            elif p.suffix == ".tflite":
                parse_tflite(p.read_bytes(), str(p))
            elif p.suffix == ".keras":
                from odml.zoo.load import load_model

                load_model(p)
        except (ValueError, OdmlError) as e:
            bad.append(f"{p.relative_to(folder)}: {type(e).__name__}: {str(e)[:120]}")
    return bad


def run_verb(name: str, kills: int, root: Path, seed: int) -> dict:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    v = VERBS[name](root)
    v.prepare()
    shutil.rmtree(v.out, ignore_errors=True)
    log, problems, done_before_kill, restarts = [], [], 0, 0
    kept: list[str] = []
    while len(log) < kills:
        p = subprocess.Popen(v.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        wait = rng.uniform(*v.window)
        t0 = time.time()
        if v.during and len(log) % 2:  # a kill while the file is being written
            watch = getattr(v, v.during_in)
            while p.poll() is None and not any(watch.glob(v.during.format(pid=p.pid))) and time.time() - t0 < 600:
                time.sleep(0.0005)
            wait = time.time() - t0 + rng.uniform(0.0, v.during_delay)
        while time.time() - t0 < wait and p.poll() is None:
            time.sleep(0.005)
        if p.poll() is not None:  # it finished (or failed) before the kill: check it, then start afresh
            err = p.stderr.read().decode(errors="replace")
            if p.returncode != 0:
                problems.append(f"exit {p.returncode} before the kill: {err.strip()[-300:]}")
            problems += [f"finished run: {x}" for x in v.final() + check_files(v.out)]
            done_before_kill += 1
            if not v.keep_finished:
                shutil.rmtree(v.out, ignore_errors=True)
            kept = []
            continue
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        writing = bool(v.during and any(getattr(v, v.during_in).glob(v.during.format(pid=p.pid).split("/")[0])))
        # (its own, not an older run's: the pid is in the name)
        at = round(time.time() - t0, 1)
        bad = check_files(v.out) if v.out.exists() else []
        now = v.finished()
        lost = [k for k in kept if k not in now]
        twice = sorted({k for k in now if now.count(k) > 1})
        problems += [f"kill {len(log) + 1}: {x}" for x in bad + v.state()]
        if lost or twice or now[:len(kept)] != kept:
            problems.append(f"kill {len(log) + 1}: finished records changed: lost {lost}, twice {twice}")
        temps = sorted(str(x.relative_to(v.out)) for x in v.out.rglob("*.tmp-*")) if v.out.exists() else []
        log.append({"kill": len(log) + 1, "after_s": at, "finished": len(now), "files_bad": bad, "temporaries": temps,
                    "while_writing": writing, "left": v.describe()})
        print(f"{name} kill {len(log)}/{kills} after {at} s: {len(now)} finished, {len(bad)} bad files"
              + (f", {len(temps)} temporaries" if temps else "") + (" (killed while saving)" if writing else "")
              + (f"; left {v.describe()}" if v.describe() else ""),
              flush=True)
        kept = now
        restarts += 1
    r = subprocess.run(v.command(), capture_output=True, text=True)  # the last start runs to the end
    if r.returncode != 0:
        problems.append(f"the final run failed: {r.stderr.strip()[-300:]}")
    now = v.finished()
    if now[:len(kept)] != kept or len(set(now)) != len(now):
        problems.append(f"the final run changed finished records: {kept} -> {now}")
    problems += [f"final: {x}" for x in v.final() + check_files(v.out)]
    left = sorted(str(x.relative_to(v.out)) for x in v.out.rglob("*.tmp-*"))
    if left:  # a killed writer's temporary is swept when its file is next written
        problems.append(f"final: temporaries of killed writers left: {left[:5]}")
    return {"verb": name, "kills": len(log), "finished_before_a_kill": done_before_kill,
            "kills_while_writing": sum(x["while_writing"] for x in log), "problems": problems,
            "clean": len(problems) == 0, "log": log}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verb", default="all", choices=("all", *VERBS))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/kill9")
    a = ap.parse_args()
    verbs = list(VERBS) if a.verb == "all" else [a.verb]
    bad = 0
    for name in verbs:
        res = run_verb(name, a.kills, Path(a.out) / name, a.seed)
        (Path(a.out) / f"{name}.json").write_text(json.dumps(res, indent=2))
        print(f"{name}: {res['kills']} kills ({res['kills_while_writing']} while writing its output), "
              f"{res['finished_before_a_kill']} runs finished before their kill, "
              f"{'all clean' if res['clean'] else str(len(res['problems'])) + ' problems'}", flush=True)
        for x in res["problems"]:
            print(f"  PROBLEM {x}")
        bad += not res["clean"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
