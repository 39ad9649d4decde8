"""Mutation fuzzing of odml's readers (issue 26), shared by the fast tier in
tests/test_fuzz.py and the long run in tests/bench/fuzz.py.

Each input kind has a valid seed, made here, and a mutator: byte flips,
truncations, offsets pointed elsewhere and huge dimensions for TFLite
flatbuffers; bad members, bad JSON and huge declared sizes for .keras zips;
byte flips and truncations for ONNX files and images; broken lines, bytes
and encodings for text datasets; for the pose pipeline, a detector and a
landmark model (.tflite) of which one is mutated, its weights too (NaN,
infinities, huge values), then run on frames of a video as ``odml pose`` does. A case passes when odml answers with a
result or with an OdmlError of one line. Anything else is a finding: an
exception of another kind (a traceback for a user), or a native crash,
which kills the worker process: the parent sees it die, saves the input it
was on and goes on in a fresh worker. TFLite files that pass odml's
verification are also loaded and run by the native LiteRT interpreter:
verification is what stands between a bad file and native code.
"""

from __future__ import annotations

import io
import json
import os
import queue
import struct
import sys
import threading
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

KINDS = ("tflite", "onnx", "keras", "images", "text", "pose")
CASE_TIMEOUT_S = 60  # a case that takes longer is a finding (a hang)


# ---- seeds -------------------------------------------------------------------------------
def make_seeds(folder: Path) -> dict[str, bytes]:
    """A small valid input of every kind (written once into ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind in KINDS:
        f = folder / f"seed.{kind}"
        if not f.is_file():
            f.write_bytes(globals()[f"_seed_{kind}"]())
        out[kind] = f.read_bytes()
    return out


def _tiny_keras() -> Any:
    from odml._tf import keras

    K = keras()
    K.utils.set_random_seed(0)
    inp = K.Input((8, 8, 3), name="image")
    x = K.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = K.layers.GlobalAveragePooling2D()(x)
    return K.Model(inp, K.layers.Dense(3)(x), name="tiny")


def _seed_tflite() -> bytes:
    from odml.exporters.tflite import convert

    return convert(_tiny_keras(), "fp32")


def _seed_keras() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.keras"
        _tiny_keras().save(p)
        return p.read_bytes()


def _seed_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["y"])]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [w, fc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m.SerializeToString()


def _png(rng: np.random.Generator, size: int = 12) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _seed_images() -> bytes:
    return _png(np.random.default_rng(0))


def _seed_text() -> bytes:
    rows = [("ham", "see you at noon"), ("spam", "WIN a free prize now, call 0800"), ("ham", "ok thanks")] * 4
    return "".join(f"{a}\t{b}\n" for a, b in rows).encode()


POSE_SIZE = 16  # the smallest input the pose pipeline takes


def _seed_pose() -> bytes:
    """A BlazePose detector and landmark model in odml's layout (tiny, random
    weights), as one blob: POSE, the detector's length, the two .tflite files."""
    from odml._tf import keras
    from odml.data.pose_geometry import anchors
    from odml.exporters.tflite import convert
    from odml.zoo.poseconfig import LANDMARKS

    K = keras()
    K.utils.set_random_seed(0)

    def tiny(units: int, shape: tuple[int, ...], name: str) -> Any:
        inp = K.Input((POSE_SIZE, POSE_SIZE, 3), name="image")
        x = K.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
        x = K.layers.GlobalAveragePooling2D()(x)
        return K.Model(inp, K.layers.Reshape(shape)(K.layers.Dense(units)(x)), name=name)

    n = len(anchors(POSE_SIZE))
    det = convert(tiny(13 * n, (n, 13), "detector"), "fp32")
    lm = convert(tiny(5 * LANDMARKS + 1, (5 * LANDMARKS + 1,), "landmarks"), "fp32")
    return pose_blob(det, lm)


def pose_blob(det: bytes, lm: bytes) -> bytes:
    return b"POSE" + struct.pack("<I", len(det)) + det + lm


def pose_parts(blob: bytes) -> tuple[bytes, bytes]:
    n = struct.unpack("<I", blob[4:8])[0] if len(blob) >= 8 else 0
    return blob[8:8 + n], blob[8 + n:]


# ---- mutators ----------------------------------------------------------------------------
def _flip(data: bytes, rng: np.random.Generator, n: int | None = None, span: int | None = None) -> bytes:
    b = bytearray(data)
    if not b:
        return bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    for pos in rng.integers(0, min(len(b), span or len(b)), n or int(rng.integers(1, 9))):
        b[pos] = int(rng.integers(0, 256))
    return bytes(b)


def _truncate(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, max(len(data), 1)))]


def _u32(data: bytes, rng: np.random.Generator, values: tuple[int, ...]) -> bytes:
    """An aligned 32-bit word (a flatbuffer offset, length or dimension) set to a chosen value."""
    b = bytearray(data)
    pos = int(rng.integers(0, max(len(b) // 4, 1))) * 4
    if pos + 4 <= len(b):
        b[pos:pos + 4] = struct.pack("<I", int(values[int(rng.integers(len(values)))]) & 0xFFFFFFFF)
    return bytes(b)


BIG = (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000000, 65536, 4, 8)


def mutate(kind: str, seed: bytes, rng: np.random.Generator) -> bytes:
    how = int(rng.integers(5))
    if kind == "tflite":
        if how == 0:
            return _flip(seed, rng, span=4096)  # the tables sit near the front
        if how == 1:
            return _truncate(seed, rng)
        if how in (2, 3):
            return _u32(seed, rng, BIG + (len(seed), len(seed) + 4, int(rng.integers(0, len(seed)))))
        return _huge_dim(seed, rng)
    if kind == "keras":
        return _mutate_zip(seed, rng)
    if kind == "onnx":
        return _truncate(seed, rng) if how == 0 else _flip(seed, rng)
    if kind == "images":
        if how == 0:
            return _truncate(seed, rng)
        if how == 3:  # a JPEG (no checksums: flipped bytes decode to something)
            from PIL import Image

            buf = io.BytesIO()
            Image.open(io.BytesIO(seed)).convert("RGB").save(buf, "JPEG")
            return _flip(buf.getvalue(), rng)
        if how == 1:  # a huge declared size in the PNG header (IHDR width and height)
            b = bytearray(seed)
            b[16:24] = struct.pack(">II", int(rng.choice([0, 1, 65535, 0x7FFFFFFF])), int(rng.choice([0, 1, 65535])))
            return bytes(b)
        return _flip(seed, rng)
    if kind == "text":
        lines = seed.split(b"\n")
        if how == 0:
            return _flip(seed, rng)
        if how == 1:
            i = int(rng.integers(len(lines)))
            lines[i] = bytes(rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8))
            return b"\n".join(lines)
        if how == 2:
            return b"\n".join(lines[: int(rng.integers(0, 3))])
        if how == 3:
            return seed.replace(b"\t", [b"", b",", b"\t\t", b"\x00"][int(rng.integers(4))])
        return seed + b"ham\t" + b"x" * int(rng.choice([1, 10000, 1_000_000])) + b"\n"
    if kind == "pose":  # one of the two models; its weights too (they decide what the pipeline gets)
        det, lm = pose_parts(seed)
        part = lm if rng.integers(2) else det
        if how in (0, 1):
            bad = _u32(part, rng, FLOATS) if how == 0 else _flip(part, rng, n=int(rng.integers(1, 64)))
        else:
            bad = mutate("tflite", part, rng)
        return pose_blob(bad, lm) if part is det else pose_blob(det, bad)
    raise ValueError(kind)


# float32 words: NaN, infinities, huge and tiny values, 1 and -1
FLOATS = (0x7FC00000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x3F800000, 0xBF800000, 0x5F000000)


def _huge_dim(seed: bytes, rng: np.random.Generator) -> bytes:
    """One of the model's tensor shapes set to a huge (or zero, or negative) dimension."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(seed), 0)
    tensors = m.subgraphs[0].tensors
    t = tensors[int(rng.integers(len(tensors)))]
    shape = list(t.shape) if t.shape is not None else [1]
    shape[int(rng.integers(len(shape)))] = int(rng.choice([0, -7, 1 << 20, (1 << 31) - 1]))
    t.shape = shape
    from odml.flatbuffer import pack_tflite

    return pack_tflite(m, len(seed))


def _mutate_zip(seed: bytes, rng: np.random.Generator) -> bytes:
    how = int(rng.integers(6))
    if how == 0:
        return _flip(seed, rng)
    if how == 1:
        return _truncate(seed, rng)
    src = zipfile.ZipFile(io.BytesIO(seed))
    members = {n: src.read(n) for n in src.namelist()}
    if how == 2:  # a member gone
        members.pop(sorted(members)[int(rng.integers(len(members)))])
    elif how == 3 and "config.json" in members:  # bad JSON config
        members["config.json"] = _mutate_json(members["config.json"], rng)
    elif how == 4:  # a member's bytes changed (the weights, the metadata)
        name = sorted(members)[int(rng.integers(len(members)))]
        members[name] = _flip(members[name], rng) if rng.integers(2) else _truncate(members[name], rng)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    data = bytearray(buf.getvalue())
    if how == 5:  # a huge declared size in the central directory (uncompressed size of a member)
        cd = data.rfind(b"PK\x01\x02")
        if cd >= 0:
            data[cd + 24:cd + 28] = struct.pack("<I", 0xFFFFFFF0)
    return bytes(data)


def _mutate_json(raw: bytes, rng: np.random.Generator) -> bytes:
    try:
        doc = json.loads(raw)
    except ValueError:
        return _flip(raw, rng)
    paths = []

    def walk(x: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, path + (k,))
        elif isinstance(x, list):
            for i, v in enumerate(x):
                walk(v, path + (i,))

    walk(doc, ())
    path = paths[int(rng.integers(len(paths)))]
    value = [None, -1, 0, 1e308, "x" * 3, [], {}, True, 2 ** 40, "__main__.Evil"][int(rng.integers(10))]
    if not path:
        return json.dumps(value).encode()
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if isinstance(parent, dict) and rng.integers(3) == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return json.dumps(doc).encode()


# ---- running one case --------------------------------------------------------------------
def run_case(kind: str, data: bytes, folder: Path) -> tuple[str, str]:
    """(outcome, detail): "ok", "error" (an OdmlError of one line: its first
    words) or "bug" (anything else: the traceback)."""
    from odml.errors import OdmlError

    try:
        _CHECKS[kind](data, folder)
    except OdmlError as e:
        msg = str(e)
        if "\n" in msg.strip() or not msg.strip():
            return "bug", f"OdmlError of {msg.count(chr(10)) + 1} lines: {msg[:300]!r}"
        return "error", type(e).__name__
    except MemoryError:
        return "bug", "MemoryError"
    except Exception:
        return "bug", traceback.format_exc(limit=12)
    return "ok", ""


def _check_tflite(data: bytes, folder: Path) -> None:
    from odml.exporters.inspect import inspect_model
    from odml.litert import load_interpreter

    p = folder / "case.tflite"
    p.write_bytes(data)
    inspect_model(p)  # odml's verification and description
    interp = load_interpreter(data)  # native code, only for what passed verification
    _invoke(interp)


def _invoke(interp: Any) -> None:
    """odml's way of running a model (parity, accuracy) on one sample of zeros."""
    from odml.litert import run_outputs

    d = interp.get_input_details()[0]
    run_outputs(interp, np.zeros((1, *d["shape"][1:]), np.float32))


def _check_onnx(data: bytes, folder: Path) -> None:
    """What a user's ONNX file meets: inspection, then loading (shape
    inference, onnx2tf, an onnxruntime session), then one run of each."""
    from odml.exporters.inspect import inspect_model
    from odml.zoo.load import load_model

    p = folder / "case.onnx"
    p.write_bytes(data)
    inspect_model(p)
    m = load_model(p)
    x = np.zeros((1, *m.model.inputs[0].shape[1:]), np.float32)
    m.predict(x)  # onnxruntime: what export's parity and the accuracy table compare against
    np.asarray(m.model(x))


def _check_keras(data: bytes, folder: Path) -> None:
    from odml.zoo.load import load_model

    p = folder / "case.keras"
    p.write_bytes(data)
    m = load_model(p)
    m.sizes()


def _check_images(data: bytes, folder: Path) -> None:
    from odml.data.images import load_images

    root = folder / "images"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (root / c / f"{i}.png").write_bytes(_png(rng))
    (root / "b" / "2.png").write_bytes(data)
    load_images(str(root), (16, 16), 3, 0.34, 0)


def _check_text(data: bytes, folder: Path) -> None:
    from odml.data.text import load_text

    p = folder / "case.tsv"
    p.write_bytes(data)
    load_text(p)


def _check_pose(data: bytes, folder: Path) -> None:
    """What ``odml pose --detector D --landmarks L video --out x.gif
    --keypoints k.json`` does with the two models: every frame through the
    tracker (thresholds at -inf: every answer is used), drawn, and its
    keypoints written as strict JSON."""
    from odml.pose.pipeline import PoseTracker, draw

    det, lm = pose_parts(data)
    (folder / "det.tflite").write_bytes(det)
    (folder / "lm.tflite").write_bytes(lm)
    t = PoseTracker(folder / "det.tflite", folder / "lm.tflite", min_detection=-np.inf, min_pose=-np.inf, threads=1)
    rng = np.random.default_rng(len(data))
    for shape in ((40, 30, 3), (40, 30, 3), (9, 64, 3)):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        r = t.process(frame)
        draw(frame, r)
        json.dumps(r.to_dict() if r is not None else {}, allow_nan=False)


_CHECKS: dict[str, Callable[[bytes, Path], None]] = {
    "tflite": _check_tflite, "onnx": _check_onnx, "keras": _check_keras, "images": _check_images, "text": _check_text,
    "pose": _check_pose}


def replay_files(folder: Path) -> list[Path]:
    """Saved inputs (``NAME.KIND``: what a finding left, kept as a regression case)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix[1:] in KINDS)


def worker(seed_dir: Path, work: Path, kinds: list[str], seed: int, start: int, cases: int, deadline: float,
           emit: Callable[[dict[str, Any]], None], replay: str | None = None) -> None:
    """Cases ``start`` .. ``cases`` - 1 (case i: kind i mod len(kinds), its
    mutant drawn from a generator seeded with (seed, i); or, ``replay``, the
    i-th saved input of that folder); each result emitted as a record, the
    case's input saved to ``work/current`` before it runs (what a crash
    leaves behind)."""
    import time

    seeds = make_seeds(seed_dir)
    work.mkdir(parents=True, exist_ok=True)
    saved = replay_files(Path(replay)) if replay else []
    for i in range(start, cases):
        if time.time() > deadline:
            break
        if replay:
            kind, data = saved[i].suffix[1:], saved[i].read_bytes()
        else:
            kind = kinds[i % len(kinds)]
            data = mutate(kind, seeds[kind], np.random.default_rng([seed, i]))
        (work / "current").write_bytes(data)
        (work / "current.json").write_text(json.dumps({"case": i, "kind": kind}))
        outcome, detail = run_case(kind, data, work)
        if outcome == "bug":  # kept by the worker: the parent reads it after this case, when current has moved on
            (work / f"found_{i}").write_bytes(data)
        emit({"case": i, "kind": kind, "outcome": outcome, "detail": detail})


def fuzz(kinds: list[str], seed: int, cases: int, seconds: float, work: Path, save: Path | None = None,
         python: str = sys.executable, replay: Path | None = None) -> dict[str, Any]:
    """Run the cases in worker processes (a fresh one after a crash or a hang); returns
    counts per kind and outcome, and the findings (bugs, crashes, hangs) with
    the saved input of each. ``replay``: a folder of saved inputs to run
    instead of mutants."""
    import subprocess
    import time

    if replay is not None:
        kinds, cases = list(KINDS), len(replay_files(replay))

    work.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + seconds
    counts: dict[str, dict[str, int]] = {k: {"ok": 0, "error": 0, "bug": 0, "crash": 0, "hang": 0} for k in kinds}
    findings: list[dict[str, Any]] = []
    start = 0
    here = Path(__file__).resolve().parent
    while start < cases and time.time() < deadline:
        cmd = [python, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import fuzzing; fuzzing._worker_main()",
               str(here), json.dumps({"seed_dir": str(work / "seeds"), "work": str(work / "w"), "kinds": kinds,
                                      "seed": seed, "start": start, "cases": cases, "deadline": deadline,
                                      "replay": str(replay) if replay else None})]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_USE_LEGACY_KERAS": "1"}
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in p.stdout] + [lines.put(None)], daemon=True).start()
        last, hung = start - 1, False
        while True:
            try:
                line = lines.get(timeout=CASE_TIMEOUT_S if last >= start else CASE_TIMEOUT_S + 120)  # + start-up
            except queue.Empty:  # a case that never ends is a finding too
                hung = True
                p.kill()
                break
            if line is None:
                break
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            last = rec["case"]
            counts[rec["kind"]][rec["outcome"]] += 1
            if rec["outcome"] == "bug":
                findings.append({**rec, "input": _keep(save, rec, (work / "w" / f"found_{rec['case']}").read_bytes())})
        rc = p.wait()
        if rc == 0 and not hung:
            break
        cur = json.loads((work / "w" / "current.json").read_text()) if (work / "w" / "current.json").is_file() else None
        if cur is None or cur["case"] <= last:  # died outside a case (start-up): nothing to blame
            findings.append({"case": None, "kind": None, "outcome": "crash", "detail": f"worker exit {rc}"})
            break
        outcome = "hang" if hung else "crash"
        counts[cur["kind"]][outcome] += 1
        rec = {"case": cur["case"], "kind": cur["kind"], "outcome": outcome,
               "detail": f"no answer in {CASE_TIMEOUT_S} s" if hung else f"worker exit {rc}"}
        findings.append({**rec, "input": _keep(save, rec, (work / "w" / "current").read_bytes())})
        start = cur["case"] + 1
    return {"counts": counts, "findings": findings,
            "cases": sum(sum(c.values()) for c in counts.values())}


def _keep(save: Path | None, rec: dict[str, Any], data: bytes) -> str | None:
    if save is None:
        return None
    save.mkdir(parents=True, exist_ok=True)
    p = save / f"{rec['outcome']}_{rec['case']}.{rec['kind']}"  # as tests/fuzz_regressions/ keeps them
    p.write_bytes(data)
    return str(p)


def _worker_main() -> None:
    a = json.loads(sys.argv[2])

    def emit(rec: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()

    worker(Path(a["seed_dir"]), Path(a["work"]), a["kinds"], a["seed"], a["start"], a["cases"], a["deadline"], emit,
           a.get("replay"))
