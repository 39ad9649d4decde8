"""The Edge TPU device: LiteRT with the libedgetpu delegate. Listed as
unavailable, with the reason, when the library or a device is missing."""

from __future__ import annotations

import ctypes.util
import glob
import os
from typing import Any

LIBRARY = "libedgetpu.so.1"


def find_library() -> str | None:
    for d in ("/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib"):
        if os.path.exists(os.path.join(d, LIBRARY)):
            return os.path.join(d, LIBRARY)
    name = ctypes.util.find_library("edgetpu")
    return name


def status() -> dict[str, Any]:
    lib = find_library()
    if lib is None:
        return {"device": "edgetpu", "available": False,
                "reason": f"{LIBRARY} not found (install libedgetpu1-std from Coral's apt repository)"}
    usb = glob.glob("/sys/bus/usb/devices/*/idVendor")
    coral_usb = any(open(p).read().strip() in ("1a6e", "18d1") for p in usb)
    pci = glob.glob("/dev/apex_*")
    if not coral_usb and not pci:
        return {"device": "edgetpu", "available": False, "library": lib,
                "reason": "no Edge TPU found on USB or PCIe (/dev/apex_*)"}
    return {"device": "edgetpu", "available": True, "library": lib,
            "targets": (["usb"] if coral_usb else []) + [f"pci:{i}" for i in range(len(pci))]}


def load_delegate(device: str = "usb"):
    """The libedgetpu delegate for ``device`` ("usb[:N]" or "pci[:N]")."""
    from ai_edge_litert.interpreter import load_delegate as _load

    from odml.devices.host import BenchError

    st = status()
    if not st["available"]:
        raise BenchError(f"edgetpu: unavailable: {st['reason']}")
    return _load(st["library"], {"device": device})
