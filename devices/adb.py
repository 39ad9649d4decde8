"""Android phones over adb: list them (`adb devices -l`, model, ABI, Android
version), push a model and the TFLite `benchmark_model` binary the user
supplies to /data/local/tmp, run it pinned with taskset and --num_threads,
parse its output (every format of TFLite's benchmark_model tool, as its
README in tensorflow/lite/tools/benchmark shows them, and the per-op profile), remove what was pushed, retry once on a dropped connection, and time
out cleanly. Every argument that reaches the device's shell is quoted."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from odml.errors import OdmlError

REMOTE_TMP = "/data/local/tmp"
BINARY_ENV = "ODML_BENCHMARK_BINARY"
RC_MARK = "__ODML_RC="
_DROPPED = ("error: closed", "device offline", "no devices/emulators", "protocol fault", "connection reset",
            "device '", "not found", "failed to connect", "broken pipe")


class AdbError(OdmlError):
    pass


def adb_exe() -> str:
    exe = os.environ.get("ODML_ADB") or shutil.which("adb")
    if exe and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        exe = None
    if not exe:
        raise AdbError("adb is not installed (Debian/Ubuntu: apt-get install adb; or set ODML_ADB)")
    return exe


def _base() -> list[str]:
    cmd = [adb_exe()]
    port = os.environ.get("ODML_ADB_PORT")
    if port:
        cmd += ["-P", port]
    return cmd


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(_base() + args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AdbError(f"adb {' '.join(args[:3])} timed out after {timeout:.0f} s") from None


def list_devices() -> list[dict[str, Any]]:
    """Attached devices from `adb devices -l`: serial, state and properties."""
    p = _run(["devices", "-l"], timeout=30)
    if p.returncode != 0:
        raise AdbError(f"adb devices failed: {(p.stderr or p.stdout).strip()[:200]}")
    return parse_devices(p.stdout)


def parse_devices(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        d: dict[str, Any] = {"serial": parts[0], "state": parts[1]}
        for kv in parts[2:]:
            if ":" in kv:
                k, v = kv.split(":", 1)
                d[k] = v
        out.append(d)
    return out


def shell(serial: str, command: str, timeout: float = 120) -> tuple[int, str]:
    """Run ``command`` (already quoted) on the device; returns (exit code,
    output). The exit code comes back through a marker, so it works with the
    legacy shell protocol of older devices too."""
    p = _run(["-s", serial, "shell", f"{command}; echo {RC_MARK}$?"], timeout=timeout)
    out = p.stdout + p.stderr
    marks = list(re.finditer(rf"{RC_MARK}(\d+)[ \t]*\r?\n?", out))
    if not marks:
        raise _dropped_or_error(serial, out)
    m = marks[-1]
    return int(m[1]), out[: m.start()] + out[m.end():]


class DroppedConnection(AdbError):
    pass


def _dropped_or_error(serial: str, text: str) -> AdbError:
    low = text.lower()
    if any(k in low for k in _DROPPED) or not text.strip():
        return DroppedConnection(f"{serial}: connection to the device dropped ({text.strip()[:120] or 'no answer'})")
    return AdbError(f"{serial}: adb failed: {text.strip()[:200]}")


def push(serial: str, local: Path, remote: str, timeout: float = 300) -> None:
    p = _run(["-s", serial, "push", str(local), remote], timeout=timeout)
    if p.returncode != 0:
        raise _dropped_or_error(serial, p.stdout + p.stderr)


def device_info(serial: str) -> dict[str, Any]:
    info: dict[str, Any] = {"serial": serial}
    for key, prop in (("model", "ro.product.model"), ("abi", "ro.product.cpu.abi"),
                      ("android", "ro.build.version.release")):
        rc, out = shell(serial, f"getprop {prop}", timeout=30)
        info[key] = out.strip() if rc == 0 else None
    return info


def status() -> list[dict[str, Any]]:
    """Rows for `odml devices`."""
    try:
        adb_exe()
    except AdbError as e:
        return [{"device": "adb", "available": False, "reason": str(e)}]
    try:
        devs = list_devices()
    except AdbError as e:
        return [{"device": "adb", "available": False, "reason": str(e)}]
    if not devs:
        return [{"device": "adb", "available": False, "reason": "adb found no attached phones"}]
    rows = []
    for d in devs:
        row = {"device": f"adb:{d['serial']}", "available": d["state"] == "device", "model": d.get("model")}
        if d["state"] == "device":
            try:
                row.update({k: v for k, v in device_info(d["serial"]).items() if k != "serial"})
            except AdbError as e:
                row.update(available=False, reason=str(e))
        else:
            row["reason"] = f"state {d['state']} (unauthorized: accept the prompt on the phone)"
        rows.append(row)
    return rows


def find_binary(binary: str | Path | None) -> Path:
    value = binary or os.environ.get(BINARY_ENV)
    if not value:
        raise AdbError(f"no benchmark_model binary: give --benchmark-binary or set {BINARY_ENV} "
                       "(build or download TFLite's benchmark_model for the phone's ABI)")
    p = Path(value)
    if not p.is_file():
        raise AdbError(f"{p}: benchmark binary not found")
    if not os.access(p, os.X_OK):
        raise AdbError(f"{p}: benchmark binary is not executable (chmod +x)")
    return p


def bench_adb(serial: str, model: Path, binary: str | Path | None = None, threads: int = 1,
              core_mask: str | None = None, runs: int = 50, warmup: int = 1, min_secs: float = 1.0,
              op_profile: bool = False, xnnpack: bool = True, timeout_s: float = 600) -> dict[str, Any]:
    """Benchmark ``model`` on the phone ``serial`` with benchmark_model."""
    from odml.flatbuffer import read_tflite

    read_tflite(model)  # a malformed model is refused here, not on the phone
    exe = find_binary(binary)
    known = {d["serial"]: d for d in list_devices()}
    if serial not in known:
        avail = ", ".join(known) or "none attached"
        raise AdbError(f"unknown device serial {serial!r} (attached: {avail})")
    if known[serial]["state"] != "device":
        raise AdbError(f"{serial}: device is {known[serial]['state']}")
    if core_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", core_mask):
        raise AdbError(f"--core-mask {core_mask!r}: expected a hexadecimal CPU mask such as f0")
    try:
        return _bench_once(serial, model, exe, threads, core_mask, runs, warmup, min_secs, op_profile, xnnpack,
                           timeout_s)
    except DroppedConnection:
        _reconnect(serial)
        return {**_bench_once(serial, model, exe, threads, core_mask, runs, warmup, min_secs, op_profile,
                              xnnpack, timeout_s), "retried": True}


def _reconnect(serial: str) -> None:
    if re.fullmatch(r"[\w.\-]+:\d+", serial):  # a network device: connect again
        _run(["disconnect", serial], timeout=15)
        p = _run(["connect", serial], timeout=30)
        if "connected" not in (p.stdout + p.stderr) or "cannot" in (p.stdout + p.stderr):
            raise AdbError(f"{serial}: device gone (reconnect failed: {(p.stdout + p.stderr).strip()[:100]})")
    else:
        _run(["-s", serial, "wait-for-device"], timeout=30)
    if serial not in {d["serial"] for d in list_devices() if d["state"] == "device"}:
        raise AdbError(f"{serial}: device gone")


def _bench_once(serial: str, model: Path, exe: Path, threads: int, core_mask: str | None, runs: int, warmup: int,
                min_secs: float, op_profile: bool, xnnpack: bool, timeout_s: float) -> dict[str, Any]:
    rdir = f"{REMOTE_TMP}/odml-{uuid.uuid4().hex[:12]}"
    rmodel = f"{rdir}/{model.name}"
    rbin = f"{rdir}/{exe.name}"
    q = shlex.quote
    try:
        rc, out = shell(serial, f"mkdir -p {q(rdir)}")
        if rc != 0:
            raise AdbError(f"{serial}: cannot create {rdir}: {out.strip()[:100]}")
        push(serial, model, rmodel)
        push(serial, exe, rbin)
        shell(serial, f"chmod 755 {q(rbin)}")
        args = [rbin, f"--graph={rmodel}", f"--num_threads={threads}", f"--num_runs={runs}",
                f"--warmup_runs={warmup}", f"--min_secs={min_secs}", f"--use_xnnpack={'true' if xnnpack else 'false'}"]
        if op_profile:
            args.append("--enable_op_profiling=true")
        cmd = " ".join(q(a) for a in args)
        if core_mask:
            cmd = f"taskset {q(core_mask)} {cmd}"
        rc, out = shell(serial, cmd, timeout=timeout_s)
        if rc != 0:
            raise AdbError(f"{serial}: benchmark_model exited {rc}: {out.strip().splitlines()[-1:] or ''}")
        res = parse_benchmark_output(out)
        if "count" not in res:
            raise AdbError(f"{serial}: could not find timings in benchmark_model's output")
        return {"device": f"adb:{serial}", "model": str(model), "size_bytes": model.stat().st_size,
                "threads": threads, "core_mask": core_mask, **res}
    finally:
        try:
            shell(serial, f"rm -rf {q(rdir)}", timeout=30)
        except AdbError:
            pass  # the device went away; nothing more to clean


_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """Parse TFLite benchmark_model output (any of its formats) into ms."""
    res: dict[str, Any] = {}
    counts = [ln for ln in text.splitlines() if re.search(r"\bcount=\d+", ln)]
    if counts:
        line = counts[-1]  # the timed runs come after the warm-up line
        kv = {}
        for k, v in re.findall(rf"\b(\w+)=({_NUM})", line):
            kv[k] = float(v)
        us = 1e-3
        res["count"] = int(kv["count"])
        for src, dst in (("avg", "mean_ms"), ("min", "min_ms"), ("max", "max_ms"), ("std", "std_ms"),
                         ("median", "median_ms"), ("p5", "p5_ms"), ("p95", "p95_ms"), ("first", "first_ms"),
                         ("curr", "last_ms")):
            if src in kv:
                res[dst] = kv[src] * us
        if "mean_ms" in res and res.get("std_ms") is not None and res["mean_ms"]:
            res["cv"] = res["std_ms"] / res["mean_ms"]
    m = re.search(rf"Inference timings in us: Init: ({_NUM}), First inference: ({_NUM}), "
                  rf"Warmup \(avg\): ({_NUM}), Inference \(avg\): ({_NUM})", text)
    if m:
        res["init_ms"], res["first_ms"] = float(m[1]) / 1e3, float(m[2]) / 1e3
        res["warmup_mean_ms"], res["mean_ms"] = float(m[3]) / 1e3, float(m[4]) / 1e3
    m = re.search(rf"Average inference timings in us: Warmup: ({_NUM}), Init: ({_NUM}), Inference: ({_NUM})", text)
    if m:
        res["warmup_mean_ms"], res["init_ms"], res["mean_ms"] = (float(m[1]) / 1e3, float(m[2]) / 1e3,
                                                                 float(m[3]) / 1e3)
        res.setdefault("count", None)
    m = re.search(rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})", text)
    if m:
        res["memory_init_mb"], res["memory_delta_mb"] = float(m[1]), float(m[2])
    m = re.search(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})", text)
    if m:
        res["peak_memory_mb"] = float(m[1])
    prof = _parse_op_summary(text)
    if prof:
        res["op_profile"] = prof
    return res


def _parse_op_summary(text: str) -> list[dict[str, Any]]:
    """The 'Summary by node type' table of --enable_op_profiling."""
    rows = []
    idx = text.find("Summary by node type")
    if idx < 0:
        return rows
    for line in text[idx:].splitlines()[1:]:
        cells = [c.strip() for c in line.strip().split("\t") if c.strip()]
        if not cells or cells[0].startswith("["):
            if rows and not cells:
                break
            continue
        if cells[0].startswith("=") or cells[0].startswith("Timings"):
            break
        try:
            rows.append({"op": cells[0], "count": int(cells[1]), "avg_ms": float(cells[2]),
                         "percent": float(cells[3].rstrip("%"))})
        except (IndexError, ValueError):
            break
    return rows
