"""Run a .tflite with the LiteRT interpreter (ai-edge-litert), after the
flatbuffer has been verified, with float inputs and outputs whatever the
model's own input and output types (quantizing and dequantizing as needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from odml._fd import quiet_stderr_fd
from odml.flatbuffer import ModelFormatError, parse_tflite


# MediaPipe's custom operators that XNNPACK's delegate implements and LiteRT's own kernels do not (its selfie
# segmentation holds Convolution2DTransposeBias): a file that fails the plain check on one of these alone is
# loaded with XNNPACK, which runs it.
XNNPACK_CUSTOM_OPS = ("Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D")


def _xnnpack_custom_only(message: str) -> bool:
    import re

    found = re.findall(r"unresolved custom op: (\w+)", message)
    return bool(found) and all(op in XNNPACK_CUSTOM_OPS for op in found)


def load_interpreter(model: str | Path | bytes, threads: int = 1, xnnpack: bool = True, verify: bool = True,
                     delegates: list | None = None):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    data = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    if verify:
        parse_tflite(bytes(data), str(model) if not isinstance(model, (bytes, bytearray)) else "model")
    plain = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES

    def build(resolver: Any, with_delegates: list | None) -> Any:
        interp = Interpreter(model_content=bytes(data), num_threads=threads, experimental_op_resolver_type=resolver,
                             experimental_delegates=with_delegates)
        interp.allocate_tensors()
        return interp

    try:
        with quiet_stderr_fd():  # LiteRT announces its XNNPACK delegate on fd 2
            if xnnpack and not delegates:
                # First LiteRT's own kernels, whose Prepare checks every operator's tensors and parameters; only
                # then XNNPACK, whose delegate reads them unchecked (a crash, found by fuzzing: an operator code
                # changed to SPLIT, its axis then a float activation). Not with other delegates: their models hold
                # custom operators that only the delegate runs (Edge TPU).
                try:
                    build(plain, None)
                except RuntimeError as e:
                    if not _xnnpack_custom_only(str(e)):
                        raise
            interp = build(OpResolverType.AUTO if xnnpack else plain, delegates)
    except (ValueError, RuntimeError, MemoryError) as e:  # well-formed, but LiteRT cannot build or size it
        where = str(model) if not isinstance(model, (bytes, bytearray)) else "model"
        why = "its tensors do not fit in memory" if isinstance(e, MemoryError) else " ".join(str(e).split())[:300]
        raise ModelFormatError(f"{where}: LiteRT cannot load it: {why}") from None
    return interp


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zp = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float32)
    scale, zp = detail["quantization"]
    if not scale:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - zp) * scale).astype(np.float32)


def run_batch(interp: Any, x: np.ndarray) -> np.ndarray:
    """Run the single-input model on every sample of ``x`` (batch 1 each) and
    return the first output, dequantized to float32."""
    return run_outputs(interp, x)[0]


def run_outputs(interp: Any, x: np.ndarray) -> list[np.ndarray]:
    """Every output of the single-input model for the batch ``x`` (run one
    sample at a time), in the model's output order, as float32."""
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    ys: list[list[np.ndarray]] = [[] for _ in outs]
    for i in range(len(x)):
        try:
            interp.set_tensor(inp["index"], _quantize(x[i:i + 1], inp))
            interp.invoke()
            got = [interp.get_tensor(o["index"]) for o in outs]
        except (ValueError, RuntimeError) as e:  # a sample of another shape, a kernel that refuses the model
            raise ModelFormatError(f"LiteRT cannot run the model on this input: {' '.join(str(e).split())[:300]}"
                                   ) from None
        for k, o in enumerate(outs):
            ys[k].append(_dequantize(got[k], o))
    return [np.concatenate(y, axis=0) for y in ys]
