"""A stand-in Android device for tests: it speaks the adb transport protocol
(what adbd speaks over TCP) on loopback, so the real `adb` client and server
connect to it with `adb connect 127.0.0.1:PORT`.

Implemented: CNXN (no AUTH), OPEN / OKAY / WRTE / CLSE streams with flow
control, the legacy `shell:` service (the command runs under /bin/sh on this
host with /data/local/tmp mapped to a private folder and a `getprop` that
answers the device's properties), and the `sync:` service (STAT, SEND/DATA/
DONE for push, RECV for pull, LIST, QUIT). Faults for tests: drop the
connection once when a shell command contains a marker, or vanish for good.
"""

from __future__ import annotations

import os
import shlex
import socket
import stat as statmod
import struct
import subprocess
import threading
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (
    0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257, 0x48545541)
VERSION = 0x01000001
MAXDATA = 256 * 1024
REMOTE_TMP = "/data/local/tmp"


def _pack(cmd: int, a0: int, a1: int, data: bytes = b"") -> bytes:
    return struct.pack("<6I", cmd, a0, a1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + data


class _Stream:
    def __init__(self, conn: "_Connection", local: int, remote: int):
        self.conn, self.local, self.remote = conn, local, remote
        self.acked = threading.Semaphore(0)
        self.inbox = bytearray()
        self.has_data = threading.Condition()
        self.closed = False

    def write(self, data: bytes) -> None:
        for i in range(0, len(data), MAXDATA // 2):
            self.conn.send(A_WRTE, self.local, self.remote, data[i:i + MAXDATA // 2])
            if not self.acked.acquire(timeout=30):
                raise ConnectionError("no OKAY from the host")

    def read(self, n: int) -> bytes:
        with self.has_data:
            while len(self.inbox) < n:
                if self.closed:
                    raise EOFError
                self.has_data.wait(timeout=30)
            out = bytes(self.inbox[:n])
            del self.inbox[:n]
            return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(A_CLSE, self.local, self.remote)


class _Connection(threading.Thread):
    def __init__(self, device: "StandInDevice", sock: socket.socket):
        super().__init__(daemon=True)
        self.device, self.sock = device, sock
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1

    def send(self, cmd: int, a0: int, a1: int, data: bytes = b"") -> None:
        with self.lock:
            self.sock.sendall(_pack(cmd, a0, a1, data))

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf.extend(chunk)
        return bytes(buf)

    def run(self) -> None:
        try:
            while True:
                cmd, a0, a1, length, _crc, _magic = struct.unpack("<6I", self._recv_exact(24))
                data = self._recv_exact(length) if length else b""
                self.handle(cmd, a0, a1, data)
        except (EOFError, OSError, ConnectionError):
            pass
        finally:
            for s in list(self.streams.values()):
                s.closed = True
                with s.has_data:
                    s.has_data.notify_all()
            try:
                self.sock.close()
            except OSError:
                pass

    def handle(self, cmd: int, a0: int, a1: int, data: bytes) -> None:
        d = self.device
        if cmd == A_CNXN:
            props = ";".join(f"{k}={v}" for k, v in (("ro.product.name", d.product), ("ro.product.model", d.model),
                                                   ("ro.product.device", d.device_name)))
            self.send(A_CNXN, VERSION, MAXDATA, f"device::{props};features=cmd".encode())
        elif cmd == A_OPEN:
            service = data.rstrip(b"\0").decode()
            local = self.next_id
            self.next_id += 1
            stream = _Stream(self, local, a0)
            if service.startswith("shell:") and service != "shell:":
                target = self.shell
            elif service == "sync:":
                target = self.sync
            else:
                self.send(A_CLSE, 0, a0)
                return
            self.streams[local] = stream
            self.send(A_OKAY, local, a0)
            threading.Thread(target=self._serve, args=(target, stream, service), daemon=True).start()
        elif cmd == A_OKAY:
            s = self.streams.get(a1)
            if s:
                s.acked.release()
        elif cmd == A_WRTE:
            s = self.streams.get(a1)
            if s:
                with s.has_data:
                    s.inbox.extend(data)
                    s.has_data.notify_all()
                self.send(A_OKAY, a1, a0)
        elif cmd == A_CLSE:
            s = self.streams.pop(a1, None)
            if s:
                s.closed = True
                with s.has_data:
                    s.has_data.notify_all()

    def _serve(self, target, stream: _Stream, service: str) -> None:
        try:
            target(stream, service)
        except (EOFError, ConnectionError, OSError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    # ---- services ---------------------------------------------------------
    def shell(self, stream: _Stream, service: str) -> None:
        d = self.device
        command = service[len("shell:"):]
        d.commands.append(command)
        if d.drop_marker and d.drop_marker in command and d.drops_left > 0:
            d.drops_left -= 1
            self.sock.shutdown(socket.SHUT_RDWR)  # the cable is pulled mid-command
            return
        if d.vanish_marker and d.vanish_marker in command:
            d.stop()
            return
        mapped = command.replace(REMOTE_TMP, str(d.tmp)).replace("/sys/", f"{d.sys}/")
        env = {**os.environ, "PATH": f"{d.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "ODML_STANDIN_GPU": d.gpu, "ODML_STANDIN_NPU": d.npu, "ODML_STANDIN_SYS": str(d.sys),
               "ODML_STANDIN_HEAT": str(d.heat)}
        # one stream, as the legacy shell's pty gives: stdout and stderr interleaved
        p = subprocess.run(["/bin/sh", "-c", mapped], cwd=d.tmp, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
        out = p.stdout.replace(str(d.tmp).encode(), REMOTE_TMP.encode())
        if out:
            stream.write(out)

    def sync(self, stream: _Stream, service: str) -> None:
        d = self.device
        while True:
            ident, length = struct.unpack("<4sI", stream.read(8))
            if ident == b"QUIT":
                return
            if ident in (b"STAT", b"SEND", b"RECV", b"LIST"):
                arg = stream.read(length).decode()
            else:
                stream.write(b"FAIL" + struct.pack("<I", 7) + b"unknown")
                return
            if ident == b"STAT":
                p = d.local_path(arg)
                if p is not None and p.exists():
                    st = p.stat()
                    stream.write(b"STAT" + struct.pack("<3I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                                       int(st.st_mtime)))
                else:
                    stream.write(b"STAT" + struct.pack("<3I", 0, 0, 0))
            elif ident == b"SEND":
                path, _, mode = arg.rpartition(",")
                data = bytearray()
                while True:
                    cid, n = struct.unpack("<4sI", stream.read(8))
                    if cid == b"DATA":
                        data.extend(stream.read(n))
                    elif cid == b"DONE":
                        break
                    else:
                        raise ConnectionError(f"unexpected {cid!r} in SEND")
                p = d.local_path(path)
                if p is None:
                    msg = f"remote path {path} is outside {REMOTE_TMP}".encode()
                    stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(bytes(data))
                os.chmod(p, int(mode) & 0o777 if mode.isdigit() else 0o644)
                d.pushed.append(path)
                stream.write(b"OKAY" + struct.pack("<I", 0))
            elif ident == b"RECV":
                p = d.local_path(arg)
                if p is None or not p.is_file():
                    msg = b"No such file or directory"
                    stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                blob = p.read_bytes()
                for i in range(0, len(blob), 64 * 1024):
                    stream.write(b"DATA" + struct.pack("<I", len(blob[i:i + 64 * 1024])) + blob[i:i + 64 * 1024])
                stream.write(b"DONE" + struct.pack("<I", 0))
            elif ident == b"LIST":
                p = d.local_path(arg)
                if p is not None and p.is_dir():
                    for child in sorted(p.iterdir()):
                        st = child.stat()
                        name = child.name.encode()
                        stream.write(b"DENT" + struct.pack("<4I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                                           int(st.st_mtime), len(name)) + name)
                stream.write(b"DONE" + struct.pack("<4I", 0, 0, 0, 0))


class StandInDevice:
    """Start with ``with StandInDevice(root) as dev: ...``; ``dev.serial`` is
    what `adb connect` takes."""

    def __init__(self, root: Path, model: str = "OdmlStandIn", abi: str = "arm64-v8a", android: str = "14",
                 drop_marker: str | None = None, drops: int = 1, vanish_marker: str | None = None,
                 gpu: str = "all", npu: str = "none", heat: int = 0,
                 cpu_khz: tuple[int, ...] = (1800000,) * 4 + (2850000,) * 4,
                 zones: tuple[tuple[str, int, int], ...] = (("cpu-1-0-usr", 36000, 95000), ("battery", 31000, 60000))):
        self.root = Path(root)
        self.tmp = self.root / "data_local_tmp"
        self.bin = self.root / "bin"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.bin.mkdir(parents=True, exist_ok=True)
        self.model, self.product, self.device_name = model, "odml_standin", "standin"
        self.props = {"ro.product.model": model, "ro.product.cpu.abi": abi, "ro.build.version.release": android,
                      "ro.product.name": self.product, "ro.product.device": self.device_name}
        getprop = self.bin / "getprop"
        lines = "\n".join(f"  {shlex.quote(k)}) echo {shlex.quote(v)} ;;" for k, v in self.props.items())
        getprop.write_text(f"#!/bin/sh\ncase \"$1\" in\n{lines}\n  *) echo ;;\nesac\n")
        getprop.chmod(getprop.stat().st_mode | statmod.S_IXUSR)
        # the phone's cores are not this host's: its taskset records the mask and runs the command unpinned
        taskset = self.bin / "taskset"
        taskset.write_text(f"#!/bin/sh\necho \"$1\" >> {shlex.quote(str(self.root / 'taskset.log'))}\nshift\n"
                           "exec \"$@\"\n")
        taskset.chmod(taskset.stat().st_mode | statmod.S_IXUSR)
        self.drop_marker, self.drops_left, self.vanish_marker = drop_marker, drops, vanish_marker
        # what the delegates take ("all", "none", or op types they refuse) and the /sys files a phone has:
        # each core's max frequency (big.LITTLE), thermal zones with a passive trip point; each run warms them
        self.gpu, self.npu, self.heat = gpu, npu, heat
        self.sys = self.root / "sys"
        for i, khz in enumerate(cpu_khz):
            f = self.sys / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq" / "cpuinfo_max_freq"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{khz}\n")
        for i, (kind, temp, trip) in enumerate(zones):
            z = self.sys / "class" / "thermal" / f"thermal_zone{i}"
            z.mkdir(parents=True, exist_ok=True)
            (z / "type").write_text(kind + "\n")
            (z / "temp").write_text(f"{temp}\n")
            (z / "trip_point_0_type").write_text("passive\n")
            (z / "trip_point_0_temp").write_text(f"{trip}\n")
        self.commands: list[str] = []
        self.pushed: list[str] = []
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self.connections: list[_Connection] = []
        self._stopped = False

    def local_path(self, remote: str) -> Path | None:
        remote = os.path.normpath(remote)
        if remote != REMOTE_TMP and not remote.startswith(REMOTE_TMP + "/"):
            return None
        return self.tmp / os.path.relpath(remote, REMOTE_TMP)

    def start(self) -> "StandInDevice":
        self.server.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self.server.accept()
            except OSError:
                return
            if self._stopped:
                sock.close()
                return
            c = _Connection(self, sock)
            self.connections.append(c)
            c.start()

    def stop(self) -> None:
        self._stopped = True
        try:
            self.server.close()
        except OSError:
            pass
        for c in self.connections:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "StandInDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
