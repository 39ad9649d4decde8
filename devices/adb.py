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
            from odml.devices.binary import status as binary_status

            try:
                row.update({k: v for k, v in device_info(d["serial"]).items() if k != "serial"})
                row["big_cores"] = big_cores(d["serial"])[0]
                row["benchmark_model"] = binary_status(row.get("abi"))
            except AdbError as e:
                row.update(available=False, reason=str(e))
        else:
            row["reason"] = f"state {d['state']} (unauthorized: accept the prompt on the phone)"
        rows.append(row)
    return rows


def binary_for(serial: str, binary: str | Path | None = None, say=None) -> Path:
    """The benchmark_model to push to ``serial``: the one given, else the
    cached or fetched LiteRT binary for the phone's ABI (``devices/binary.py``)."""
    from odml.devices.binary import BINARY_ENV, BinaryError, find_binary

    try:
        if binary or os.environ.get(BINARY_ENV):
            return find_binary(binary)
        rc, out = shell(serial, "getprop ro.product.cpu.abi", timeout=30)
        abi = out.strip().splitlines()[-1].strip() if rc == 0 and out.strip() else ""
        if not abi:
            raise AdbError(f"{serial}: the phone does not say its ABI (getprop ro.product.cpu.abi); give "
                           "--benchmark-binary")
        return find_binary(None, abi, say=say)
    except BinaryError as e:
        raise AdbError(str(e)) from None


# accelerator -> benchmark_model's flags for it (TFLite's and LiteRT's tool; each ignores the other's) and the
# delegate names (a regex) its summary lines and profile rows carry
ACCELERATORS: dict[str, tuple[tuple[str, ...], str]] = {
    "cpu": ((), r"xnnpack"),
    "gpu": (("--use_gpu=true",), r"gpu"),
    "npu": (("--use_npu=true", "--use_nnapi=true"), r"nnapi|npu|dispatch|neuron|qnn"),
}


def check_accelerator(name: str, where: str) -> str:
    if name not in ACCELERATORS:
        raise AdbError(f"{where}: unknown accelerator {name!r}; phones run {', '.join(ACCELERATORS)}")
    return name


def bench_adb(serial: str, model: Path, binary: str | Path | None = None, threads: int = 1,
              core_mask: str | None = None, runs: int = 50, warmup: int = 1, min_secs: float = 1.0,
              op_profile: bool = False, xnnpack: bool = True, timeout_s: float = 600, accelerator: str = "cpu",
              libraries: Path | None = None, say=None) -> dict[str, Any]:
    """Benchmark ``model`` on the phone ``serial`` with benchmark_model on
    ``accelerator`` (cpu, gpu or npu). Without ``core_mask`` the big cores
    are pinned where the phone says which they are; the hottest thermal zone
    is read before and after. ``libraries``: a folder of NPU dispatch
    libraries pushed beside the binary."""
    from odml.flatbuffer import read_tflite

    read_tflite(model)  # a malformed model is refused here, not on the phone
    check_accelerator(accelerator, f"adb:{serial}")
    known = {d["serial"]: d for d in list_devices()}
    if serial not in known:
        avail = ", ".join(known) or "none attached"
        raise AdbError(f"unknown device serial {serial!r} (attached: {avail})")
    if known[serial]["state"] != "device":
        raise AdbError(f"{serial}: device is {known[serial]['state']}")
    if core_mask is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", core_mask):
        raise AdbError(f"--core-mask {core_mask!r}: expected a hexadecimal CPU mask such as f0")
    libs = _libraries(libraries)
    exe = binary_for(serial, binary, say)
    args = (serial, model, exe, threads, core_mask, runs, warmup, min_secs, op_profile, xnnpack, timeout_s,
            accelerator, libs)
    try:
        return _bench_once(*args)
    except DroppedConnection:
        _reconnect(serial)
        return {**_bench_once(*args), "retried": True}


def _libraries(folder: Path | None) -> list[Path]:
    if folder is None:
        return []
    folder = Path(folder)
    libs = sorted(folder.glob("*.so")) if folder.is_dir() else []
    if not libs:
        raise AdbError(f"--npu-libraries {folder}: no .so files there (the vendor's LiteRT dispatch libraries, "
                       "libLiteRtDispatch_*.so)")
    return libs


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


CPUS = "/sys/devices/system/cpu"
THERMAL = "/sys/class/thermal"
HOT_RISE_C = 5.0  # the hottest zone rose this much during one run: the next figures may be throttled


def big_cores(serial: str, threads: int = 1) -> tuple[str | None, dict[int, int]]:
    """The taskset mask of the phone's fastest cores (by cpuinfo_max_freq,
    fastest first, whole frequency groups until there are at least
    ``threads``) and every core's max frequency; no mask when all cores are
    alike, when the mask would take every core, or the phone does not say."""
    rc, out = shell(serial, f"for c in {CPUS}/cpu[0-9]*; do echo \"${{c##*/}} "
                            f"$(cat $c/cpufreq/cpuinfo_max_freq 2>/dev/null)\"; done", timeout=30)
    freqs = {int(m[1]): int(m[2]) for m in re.finditer(r"^cpu(\d+) (\d+)\s*$", out, re.M)} if rc == 0 else {}
    return fastest(freqs, threads), freqs


def fastest(freqs: dict[int, int], threads: int = 1) -> str | None:
    """The taskset mask of the fastest cores of ``freqs`` (core -> max kHz):
    whole frequency groups, fastest first, until there are ``threads``; None
    when all cores are alike or every core would be taken."""
    if not freqs or len(set(freqs.values())) < 2:
        return None
    chosen: list[int] = []
    for f in sorted(set(freqs.values()), reverse=True):  # a phone with one prime core: the prime and the big
        chosen += [c for c, g in freqs.items() if g == f]
        if len(chosen) >= threads:
            break
    if len(chosen) == len(freqs):
        return None
    return format(sum(1 << c for c in chosen), "x")


def thermal(serial: str) -> dict[str, dict[str, Any]]:
    """Each thermal zone: its type, temperature (deg C) and lowest passive trip point."""
    rc, out = shell(serial, f"for z in {THERMAL}/thermal_zone*; do echo \"Z ${{z##*/}} $(cat $z/type 2>/dev/null) "
                            f"$(cat $z/temp 2>/dev/null)\"; for t in $z/trip_point_*_type; do [ -f \"$t\" ] && "
                            f"echo \"T ${{z##*/}} $(cat $t) $(cat ${{t%_type}}_temp)\"; done; done", timeout=30)
    zones: dict[str, dict[str, Any]] = {}
    if rc != 0:
        return zones
    for m in re.finditer(r"^Z (\S+) (\S+) (-?\d+)\s*$", out, re.M):
        zones[m[1]] = {"type": m[2], "temp_c": _celsius(int(m[3])), "trip_c": None}
    for m in re.finditer(r"^T (\S+) passive (-?\d+)\s*$", out, re.M):
        z = zones.get(m[1])
        if z is not None:
            t = _celsius(int(m[2]))
            z["trip_c"] = t if z["trip_c"] is None else min(z["trip_c"], t)
    return zones


def _celsius(v: int) -> float:
    return v / 1000.0 if abs(v) >= 1000 else float(v)  # millidegrees on most phones, degrees on some


def heat(before: dict, after: dict) -> dict[str, Any] | None:
    """What the run did to the hottest zone, and whether it may have throttled."""
    common = [z for z in after if z in before]
    if not common:
        return None
    z = max(common, key=lambda k: after[k]["temp_c"])
    b, a, trip = before[z]["temp_c"], after[z]["temp_c"], after[z]["trip_c"]
    hot = a - b >= HOT_RISE_C or (trip is not None and a >= trip)
    return {"zone": z, "type": after[z]["type"], "before_c": b, "after_c": a, "trip_c": trip, "throttle_risk": hot}


def _bench_once(serial: str, model: Path, exe: Path, threads: int, core_mask: str | None, runs: int, warmup: int,
                min_secs: float, op_profile: bool, xnnpack: bool, timeout_s: float, accelerator: str = "cpu",
                libs: list[Path] | None = None) -> dict[str, Any]:
    rdir = f"{REMOTE_TMP}/odml-{uuid.uuid4().hex[:12]}"
    rmodel = f"{rdir}/{model.name}"
    rbin = f"{rdir}/{exe.name}"
    q = shlex.quote
    pinned = "given" if core_mask else None
    try:
        rc, out = shell(serial, f"mkdir -p {q(rdir)}")
        if rc != 0:
            raise AdbError(f"{serial}: cannot create {rdir}: {out.strip()[:100]}")
        push(serial, model, rmodel)
        push(serial, exe, rbin)
        libs = libs if accelerator == "npu" else []
        for lib in libs:
            push(serial, lib, f"{rdir}/{lib.name}")
        shell(serial, f"chmod 755 {q(rbin)}")
        if core_mask is None:
            core_mask, _ = big_cores(serial, threads)
            pinned = "big cores" if core_mask else None
        flags, _ = ACCELERATORS[accelerator]
        args = [rbin, f"--graph={rmodel}", f"--num_threads={threads}", f"--num_runs={runs}",
                f"--warmup_runs={warmup}", f"--min_secs={min_secs}", f"--use_xnnpack={'true' if xnnpack else 'false'}",
                *flags]
        if libs:
            args += [f"--dispatch_library_path={rdir}"]
        if op_profile:
            args += ["--enable_op_profiling=true", "--use_profiler=true"]
        cmd = " ".join(q(a) for a in args)
        if core_mask:
            cmd = f"taskset {q(core_mask)} {cmd}"
        if libs:
            cmd = f"LD_LIBRARY_PATH={q(rdir)} ADSP_LIBRARY_PATH={q(rdir)} {cmd}"
        before = thermal(serial)
        rc, out = shell(serial, cmd, timeout=timeout_s)
        after = thermal(serial)
        if rc != 0:
            failed = re.search(r"Failed to apply (\w+) delegate", out)
            if failed and accelerator != "cpu":
                raise AdbError(f"{serial}: the phone has no working {accelerator.upper()} delegate "
                               f"(benchmark_model: {failed[0]})")
            raise AdbError(f"{serial}: benchmark_model exited {rc}: {out.strip().splitlines()[-1:] or ''}")
        res = parse_benchmark_output(out)
        if "count" not in res:
            raise AdbError(f"{serial}: could not find timings in benchmark_model's output")
        res["delegation"] = delegation(out, accelerator, res.get("op_rows"))
        if accelerator != "cpu" and not res["delegation"]["ops_delegated"]:
            raise AdbError(f"{serial}: the phone ran nothing on the {accelerator.upper()}: benchmark_model applied no "
                           f"{accelerator.upper()} delegate ({res['delegation'].get('note') or 'no delegate summary'})")
        return {"device": f"adb:{serial}", "accelerator": accelerator, "model": str(model),
                "size_bytes": model.stat().st_size, "threads": threads, "core_mask": core_mask, "pinned": pinned,
                "thermal": heat(before, after), **res}
    finally:
        try:
            shell(serial, f"rm -rf {q(rdir)}", timeout=30)
        except AdbError:
            pass  # the device went away; nothing more to clean


_REPLACING = re.compile(r"Replacing (\d+) (?:out of (\d+) )?node\(s\) with delegate \(([^)]+)\) node, "
                        r"yielding (\d+) partition")
_RUN_SPLIT = re.compile(r"(\d+) operations will run on the (\w+), and the remaining (\d+) operation\(s\) will run "
                        r"on the CPU")
_NNAPI_REFUSED = re.compile(r"Operator (\S+) \(v\d+\) refused by NNAPI delegate: (.*)")


def delegation(text: str, accelerator: str, op_rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What ran where, from benchmark_model's log: the delegate of
    ``accelerator``, how many of the graph's ops it took (TFLite's
    "Replacing N out of M node(s) with delegate" line), the ops it refused
    and why (the GPU delegate's "not supported" list, NNAPI's "refused"
    lines) and, with an op profile, the share of the time spent in it."""
    pattern = re.compile(ACCELERATORS[accelerator][1], re.I)
    res: dict[str, Any] = {"accelerator": accelerator, "delegate": None, "ops_delegated": 0, "ops_total": None,
                           "share_ops": None, "partitions": None, "fallback": [], "share_time": None}
    hits = [m for m in _REPLACING.finditer(text) if pattern.search(m[3])]
    if hits:
        m = hits[-1]
        res.update(delegate=m[3], ops_delegated=int(m[1]), partitions=int(m[4]))
        if m[2]:
            res["ops_total"] = int(m[2])
    split = [m for m in _RUN_SPLIT.finditer(text) if pattern.search(m[2])]
    if split:
        on, off = int(split[-1][1]), int(split[-1][3])
        res["ops_total"] = res["ops_total"] or on + off
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Following operations are not supported by" in line and pattern.search(line):
            for row in lines[i + 1:]:
                m = re.match(r"^\s*([A-Z0-9_]+(?: [\w./-]+)?): (.+?)\s*$", row)
                if not m:
                    break
                res["fallback"].append({"op": m[1], "reason": m[2]})
    if accelerator == "npu":
        res["fallback"] += [{"op": m[1], "reason": m[2].strip()} for m in _NNAPI_REFUSED.finditer(text)]
    if res["ops_total"]:
        res["share_ops"] = res["ops_delegated"] / res["ops_total"]
    if op_rows:
        total = sum(r["avg_ms"] for r in op_rows)
        on = sum(r["avg_ms"] for r in op_rows if pattern.search(r["op"]))
        res["share_time"] = on / total if total > 0 else None
    if not hits:
        note = re.search(r"^.*(?:delegate|acceleration).*(?:unsupported|not supported|failed|not be executed).*$",
                         text, re.I | re.M)
        res["note"] = note[0].strip()[:160] if note else None
    return res


_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"


def parse_benchmark_output(text: str) -> dict[str, Any]:
    """Parse TFLite benchmark_model output (any of its formats) into ms."""
    res: dict[str, Any] = {}
    # the timing lines start with count= (after a log prefix); the op profile's summary lines ("Timings
    # (microseconds): count=...", "Memory (bytes): count=0") come after them and are not timings of the runs
    counts = [ln for ln in text.splitlines() if re.match(r"^\s*(?:[A-Z]+:\s*)?count=\d+", ln)]
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
    rows = _parse_run_order(text)
    if rows:
        res["op_rows"] = rows
    return res


def _parse_run_order(text: str) -> list[dict[str, Any]]:
    """Every node of the per-op profile's 'Run Order' table (of the regular
    runs, not initialization): node type, average ms, share, the tensor
    names in its [Name] and its node index."""
    start = text.find("Regular Benchmark Runs")
    idx = text.find("Run Order", start if start >= 0 else 0)
    if idx < 0:
        return []
    rows = []
    for line in text[idx:].splitlines()[1:]:
        cells = [c.strip() for c in line.strip().split("\t") if c.strip()]
        if not cells:
            if rows:
                break
            continue
        if cells[0].startswith("[node type]") or cells[0].startswith("[Node type]"):
            continue
        if cells[0].startswith("="):
            break
        m = re.match(r"^\[(.*)\](?::(\d+))?$", cells[-1])
        try:
            rows.append({"op": cells[0], "avg_ms": float(cells[2]), "percent": float(cells[3].rstrip("%")),
                         "name": m[1] if m else cells[-1], "node": int(m[2]) if m and m[2] else None})
        except (IndexError, ValueError):
            break
    return rows


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
