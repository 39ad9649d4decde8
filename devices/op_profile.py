"""A per-op profile on the host: where one inference's time goes, op by op.

LiteRT's Python packages expose no op profiler (benchmark_model's
``--enable_op_profiling`` is C++ only), so each op of the file is timed
alone: the op cut out into a one-op .tflite (its constant inputs kept, its
other inputs fed the values they hold when the whole model runs on the same
input), run by the same LiteRT runtime (XNNPACK on unless asked otherwise),
its median over repeated invokes, less what one invoke of an empty op costs
(measured in the same process). Ops that cannot run alone (control flow,
stateful and custom ops) are listed as not measured. The sum is set beside
the whole model's median measured the same way, so the caller can say how
much the cut-up view misses (caches shared across ops, the fusion XNNPACK
does across a graph). Runs in the host's child process; never imports
TensorFlow."""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

# ops that reference other subgraphs or hold state cannot run cut out of their graph
_NOT_ALONE = {"WHILE", "IF", "CALL_ONCE", "CALL", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
              "STABLEHLO_COMPOSITE", "DELEGATE", "CUSTOM"}


def _time_invokes(it: Any, min_runs: int, min_secs: float) -> float:
    for _ in range(5):
        it.invoke()
    ts: list[float] = []
    end = time.perf_counter() + min_secs
    while len(ts) < min_runs or (time.perf_counter() < end and len(ts) < 100_000):
        t = time.perf_counter()
        it.invoke()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def _interpreter(content: bytes, threads: int, xnnpack: bool, preserve: bool = False) -> Any:
    """LiteRT's Interpreter on ``content``; ``preserve``: every tensor kept
    after the run (LiteRT's own kernels: a delegate keeps none)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_content=content, num_threads=threads, experimental_op_resolver_type=resolver,
                     experimental_preserve_all_tensors=preserve)
    it.allocate_tensors()
    return it


def _empty_op(schema: Any, fu: Any) -> bytes:
    """A one-op model adding a 1-element tensor to itself: the cost of one invoke."""
    m = schema.ModelT()
    m.version = 3
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    m.operatorCodes = [code]
    m.buffers = [schema.BufferT()]
    tensors = []
    for name in ("x", "y"):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [1], schema.TensorType.FLOAT32, 0, name
        tensors.append(t)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [1], [op]
    m.subgraphs = [sg]
    return bytes(fu.convert_object_to_bytearray(m))


def _op_names(schema: Any, model: Any) -> list[str]:
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for code in model.operatorCodes:
        c = max(code.builtinCode, code.deprecatedBuiltinCode)
        out.append(names.get(c, f"OP_{c}") if c != schema.BuiltinOperator.CUSTOM else "CUSTOM")
    return out


def profile(path: str, threads: int = 1, xnnpack: bool = True, min_runs: int = 30, min_secs: float = 0.05,
            seed: int = 0) -> dict[str, Any]:
    """Each op of ``path``'s main subgraph timed alone (ms), with its output
    tensor names; the empty-invoke cost subtracted; the whole model's
    median measured the same way."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    from pathlib import Path

    data = Path(path).read_bytes()
    whole = _interpreter(data, threads, xnnpack)
    for d in whole.get_input_details():
        whole.set_tensor(d["index"], _same_input(d, np.random.default_rng(seed)))
    whole_ms = _time_invokes(whole, min_runs, min_secs)
    del whole
    # the values every tensor holds on this input, to feed each op cut out
    keep = _interpreter(data, threads, xnnpack=False, preserve=True)
    for d in keep.get_input_details():
        keep.set_tensor(d["index"], _same_input(d, np.random.default_rng(seed)))
    keep.invoke()

    model = fu.read_model_from_bytearray(bytearray(data))
    model.signatureDefs = []
    model.metadata = []
    sg = model.subgraphs[0]
    kinds = _op_names(schema, model)
    overhead = min(_time_invokes(_interpreter(_empty_op(schema, fu), threads, xnnpack), min_runs, min_secs)
                   for _ in range(3))

    def stored(t: int) -> bool:
        b = model.buffers[sg.tensors[t].buffer] if sg.tensors[t].buffer < len(model.buffers) else None
        return b is not None and ((b.data is not None and len(b.data) > 0) or bool(getattr(b, "size", 0)))

    # weights stored fp16 or sparse reach their op through DEQUANTIZE / DENSIFY of a constant: LiteRT runs
    # those once when the model is loaded, so they cost no inference time, and their outputs are the weights
    # the op cut out must hold as constants (XNNPACK packs constant weights; fed as inputs they would not be)
    folded: set[int] = set()
    for op in sg.operators:
        ins = [t for t in op.inputs if t >= 0]
        if ins and all(stored(t) or t in folded for t in ins) and kinds[op.opcodeIndex] not in _NOT_ALONE:
            folded.update(t for t in op.outputs if t >= 0)

    rows = []
    for i, op in enumerate(sg.operators):
        kind = kinds[op.opcodeIndex]
        names = [_name(sg.tensors[t].name) for t in op.outputs if t >= 0]
        row: dict[str, Any] = {"node": i, "op": kind, "name": ";".join(names), "ms": None}
        rows.append(row)
        if kind in _NOT_ALONE:
            row["error"] = "does not run cut out of its graph"
            continue
        if all(t in folded for t in op.outputs if t >= 0):
            row.update(ms=0.0, folded=True)  # evaluated once at load time
            continue
        one = copy.copy(model)
        sub = copy.copy(sg)
        sub.tensors = list(sg.tensors)
        one.buffers = list(model.buffers)
        for t in dict.fromkeys(op.inputs):
            if t in folded:  # the weights as a constant of the one-op model
                value = np.ascontiguousarray(keep.get_tensor(t))
                tensor = copy.copy(sg.tensors[t])
                buf = schema.BufferT()
                buf.data = np.frombuffer(value.tobytes(), np.uint8)
                tensor.buffer = len(one.buffers)
                one.buffers.append(buf)
                sub.tensors[t] = tensor
        sub.operators = [op]
        sub.inputs = [t for t in dict.fromkeys(op.inputs) if t >= 0 and not stored(t) and t not in folded]
        sub.outputs = [t for t in op.outputs if t >= 0]
        one.subgraphs = [sub]
        try:
            it = _interpreter(bytes(fu.convert_object_to_bytearray(one)), threads, xnnpack)
            for d, t in zip(it.get_input_details(), sub.inputs):
                it.set_tensor(d["index"], keep.get_tensor(t))
            row["ms"] = max(0.0, _time_invokes(it, min_runs, min_secs) - overhead)
        except (ValueError, RuntimeError) as e:
            row["error"] = " ".join(str(e).split())[:120]
    measured = [r["ms"] for r in rows if r["ms"] is not None]
    return {"method": "each op timed alone, less one empty invoke", "folded": sum(1 for r in rows if r.get("folded")),
            "whole_ms": max(0.0, whole_ms - overhead),
            "whole_raw_ms": whole_ms, "invoke_overhead_ms": overhead, "sum_ms": float(sum(measured)),
            "ops": rows, "unmeasured": sum(1 for r in rows if r["ms"] is None)}


def _same_input(d: dict, rng: np.random.Generator) -> np.ndarray:
    if np.issubdtype(d["dtype"], np.integer) and d["quantization"][0]:
        info = np.iinfo(d["dtype"])
        return rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(d["dtype"])
    if np.issubdtype(d["dtype"], np.integer) or d["dtype"] == np.bool_:
        return np.zeros(d["shape"], d["dtype"])
    return rng.random(d["shape"]).astype(d["dtype"])


def _name(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw)


def mapped(rows: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """Per-op rows of ``path`` mapped to layers and, for a model whose card
    names a family with blocks, to the units of its spec (``zoo/opmap.py``)."""
    from pathlib import Path

    from odml.flatbuffer import read_tflite
    from odml.zoo.card import ModelCard
    from odml.zoo.opmap import by_layer

    p = Path(path)
    card = ModelCard.from_tflite(p.read_bytes(), str(p), read_tflite(p).metadata)
    if card is None:
        return by_layer(rows)
    fam, cfg = card.family, card.config
    return by_layer(rows, None, lambda layer: fam.unit_of(cfg, layer))
