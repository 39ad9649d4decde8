"""Every device backend, and what is attached and usable here."""

from __future__ import annotations

import os
import platform
from typing import Any


def host_status() -> dict[str, Any]:
    try:
        import ai_edge_litert  # noqa: F401

        ok, reason = True, None
    except ImportError as e:  # pragma: no cover
        ok, reason = False, f"ai-edge-litert not importable: {e}"
    return {"device": "host", "available": ok, "reason": reason, "cpu": platform.processor() or platform.machine(),
            "cores": len(os.sched_getaffinity(0))}


def list_devices() -> list[dict[str, Any]]:
    from odml.devices import edgetpu

    rows = [host_status()]
    try:
        from odml.devices import adb

        rows.extend(adb.status())
    except ImportError:
        pass
    rows.append(edgetpu.status())
    return rows
