"""One map from a .tflite back to the model: a TFLite op (its output tensor
names) -> the Keras layer or ONNX node it came from -> the block of an odml
spec. The int8 diagnosis, the int8 recipe search and the per-op profiles of
the host and of phones all go through it, so "which layer" has one answer."""

from __future__ import annotations

import re
from typing import Any, Callable


def tensor_key(name: str) -> str:
    """A tensor's name without what quantization appends to it."""
    return re.sub(r"(_int8|_dequantize|_quantized|;_\d+)$", "", name)


def layer_of(tensor: str, layers: list[str] | None = None) -> str:
    """The layer a tensor comes from: the first of ``layers`` (the model's
    layer names, longest first) its name holds as a path component, else the
    second component of its first fused name (``model/conv2d_3/BiasAdd``)."""
    first = tensor.split(";")[0]
    parts = [p for p in first.split("/") if p]
    for name in sorted(layers or [], key=len, reverse=True):
        if name in parts:
            return name
    return parts[1] if len(parts) > 2 else (parts[0] if parts else tensor)


def by_layer(rows: list[dict[str, Any]], layers: list[str] | None = None,
             unit_of: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Per-op rows (``op``, ``name``: the output tensor names, ``ms``) mapped
    to layers and, with ``unit_of`` (the family's), to the units of its spec.
    An op whose layer is in no unit (the classifier named after the output,
    the quantize at the input) goes with the unit of the op before it (the
    one after, at the start): the graph runs in order. Returns the rows with
    ``layer`` and ``unit`` added, the sums per layer and per unit in the
    order they run, and the total."""
    out_rows, per_layer, per_unit = [], {}, {}
    units: list[str | None] = []
    for r in rows:
        layer = layer_of(r.get("name") or r["op"], layers) if r.get("name") else r["op"]
        units.append(unit_of(layer) if unit_of else None)
        out_rows.append({**r, "layer": layer})
    if unit_of:
        known = [u for u in units if u]
        last = known[0] if known else None
        for i, u in enumerate(units):
            last = u or last
            units[i] = last
    for r, u in zip(out_rows, units):
        r["unit"] = u
        ms = r.get("ms") or 0.0
        lay = per_layer.setdefault(r["layer"], {"layer": r["layer"], "unit": u, "ops": 0, "ms": 0.0})
        lay["ops"] += 1
        lay["ms"] += ms
        if u:
            un = per_unit.setdefault(u, {"unit": u, "ops": 0, "ms": 0.0})
            un["ops"] += 1
            un["ms"] += ms
    total = sum(r.get("ms") or 0.0 for r in out_rows)
    for d in list(per_layer.values()) + list(per_unit.values()):
        d["share"] = d["ms"] / total if total else 0.0
    return {"ops": out_rows, "layers": list(per_layer.values()), "units": list(per_unit.values()), "sum_ms": total}


_COUNT_RE = re.compile(r"Number of operations that will run on (Edge TPU|CPU):\s*(\d+)")
_ROW_RE = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")
MAPPED = "Mapped to Edge TPU"


def parse_compiler_log(text: str) -> dict[str, Any]:
    """Parse edgetpu_compiler's log: the operation counts and the
    `Operator  Count  Status` table."""
    res: dict[str, Any] = {"on_edgetpu": None, "on_cpu": None, "table": []}
    for where, n in _COUNT_RE.findall(text):
        res["on_edgetpu" if where == "Edge TPU" else "on_cpu"] = int(n)
    in_table = False
    for line in text.splitlines():
        if re.match(r"^\s*Operator\s+Count\s+Status", line):
            in_table = True
            continue
        if in_table:
            if not line.strip() or set(line.strip()) <= {"-"}:
                continue
            m = _ROW_RE.match(line.strip())
            if m:
                res["table"].append({"operator": m[1], "count": int(m[2]), "status": m[3]})
            else:
                in_table = False
    return res


def compiler_delegation(parsed: dict[str, Any]) -> dict[str, Any]:
    """What ran where on the Edge TPU, in the shape a phone's delegate
    summary has (``devices/adb.py`` ``delegation``): ops on the Edge TPU,
    of all ops, and the ops left on the CPU with the compiler's reason."""
    on, off = parsed.get("on_edgetpu"), parsed.get("on_cpu")
    total = (on or 0) + (off or 0) if on is not None or off is not None else None
    fallback = [{"op": r["operator"], "count": r["count"], "reason": r["status"]}
                for r in parsed.get("table", []) if r["status"] != MAPPED]
    return {"accelerator": "edgetpu", "delegate": "edgetpu_compiler", "ops_delegated": on or 0, "ops_total": total,
            "share_ops": (on or 0) / total if total else None, "partitions": None, "fallback": fallback,
            "share_time": None}
