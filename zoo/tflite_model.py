"""A float .tflite as a model source (what MediaPipe and model zoos ship):
what goes in and comes out, its size (parameters, multiply-adds, ops), and
the model itself run by LiteRT, on a batch in eager code and inside a
``tf.function`` (``tf.numpy_function``), so that odml's distillation can
run it as a teacher.

The file is parsed and verified by odml's reader before LiteRT sees it. A
file whose custom ops LiteRT's kernels cannot run but odml can rewrite
(MediaPipe's Convolution2DTransposeBias) runs in its float32 form
(``exporters.requantize.float32_file``), which computes the same.
No TensorFlow at import time."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from odml.errors import OdmlError
from odml.flatbuffer import ModelFormatError, parse_tflite

_IMAGE_RANGE = (0.0, 255.0)


class TfliteModelError(OdmlError):
    """A .tflite odml cannot take as a model: not one input, a dynamic
    shape, a file LiteRT cannot run."""


_TRANSPOSED_BIAS = "CUSTOM:Convolution2DTransposeBias"  # MediaPipe's: (x, weights (Cout, kh, kw, Cin), bias)


def _kinds(graph: Any, names: list[str] | None) -> list[str]:
    """Each op's kind, a custom op's with its name (``names``: the file's
    op names, ``TFLiteModel.ops``)."""
    return [names[op.index] if names and op.kind == "CUSTOM" and op.index < len(names) else op.kind
            for op in graph.ops]


def tflite_macs(graph: Any, names: list[str] | None = None) -> int:
    """Multiply-adds of the CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV (and
    MediaPipe's Convolution2DTransposeBias) and FULLY_CONNECTED ops of
    ``graph`` (a ``zoo.tflite_graph.Graph``; ``names`` the file's op names,
    for custom ops) for one input, from the shapes of their weights and
    outputs (an op whose shapes are not known counts 0)."""
    total = 0
    for op, kind in zip(graph.ops, _kinds(graph, names)):
        try:
            w = graph.shapes[op.inputs[1]] if len(op.inputs) > 1 else []
            y = graph.shapes[op.outputs[0]]
            if kind == _TRANSPOSED_BIAS:
                x = graph.shapes[op.inputs[0]]
                total += int(np.prod(x[1:])) * int(np.prod(w[:3]))
            elif kind == "CONV_2D":  # weights (Cout, kh, kw, Cin/groups), output NHWC
                total += int(np.prod(y[1:])) * int(np.prod(w[1:]))
            elif kind == "DEPTHWISE_CONV_2D":  # weights (1, kh, kw, C * multiplier)
                total += int(np.prod(y[1:])) * int(w[1]) * int(w[2])
            elif kind == "TRANSPOSE_CONV":  # inputs (output_shape, weights (Cout, kh, kw, Cin), x)
                w, x = graph.shapes[op.inputs[1]], graph.shapes[op.inputs[2]]
                total += int(np.prod(x[1:])) * int(np.prod(w[:3]))
            elif kind == "FULLY_CONNECTED":  # weights (units, in)
                total += int(np.prod(y[1:] if len(y) > 1 else y)) * int(w[1])
        except (IndexError, ValueError, TypeError):
            continue
    return int(total)


def tflite_params(graph: Any, names: list[str] | None = None) -> int:
    """Values of the stored weights and biases of the weighted ops of
    ``graph`` (float or float16 constants, DEQUANTIZE / DENSIFY folded)."""
    seen: set[int] = set()
    for op, kind in zip(graph.ops, _kinds(graph, names)):
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", _TRANSPOSED_BIAS):
            continue
        ins = op.inputs[1:] if kind != "TRANSPOSE_CONV" else op.inputs[1:2] + op.inputs[3:]
        seen |= {i for i in ins if i >= 0 and i in graph.consts and graph.consts[i].dtype.kind == "f"}
    return int(sum(graph.consts[i].size for i in seen))


class TfliteModel:
    """A float .tflite with one input, run by LiteRT.

    ``input_name``, ``input_shape`` (without the batch; NHWC for an image),
    ``input_dtype``, ``input_range`` (what the metadata's normalization maps
    pixels 0..255 onto, None without it), ``output_names``, ``output_shapes``
    (without the batch), ``params``, ``macs`` and ``ops`` (a histogram, the
    DEQUANTIZE / DENSIFY of stored weights not counted), in the file's
    order."""

    def __init__(self, path: str | Path):
        from odml.zoo.tflite_graph import read_graph

        p = Path(path)
        if not p.is_file():
            raise ModelFormatError(f"{p}: file not found")
        self.path = p
        self.data = p.read_bytes()
        m = parse_tflite(self.data, str(p))
        if len(m.inputs) != 1:
            raise TfliteModelError(f"{p}: has {len(m.inputs)} inputs; odml takes models with one input")
        inp = m.inputs[0]
        if not inp.shape or any(d < 1 for d in inp.shape[1:]) or inp.shape[0] not in (1, -1):
            raise TfliteModelError(f"{p}: its input {inp.name!r} has shape {inp.shape}; odml takes a .tflite whose "
                                   "input has a fixed shape and a batch of 1")
        self.input_name = inp.name
        self.input_shape = tuple(int(d) for d in inp.shape[1:])
        self.input_dtype = inp.dtype
        self.output_names = [t.name for t in m.outputs]
        self.output_shapes = [tuple(int(d) for d in t.shape[1:]) for t in m.outputs]
        graph = read_graph(p)
        self.params = tflite_params(graph, m.ops)
        self.macs = tflite_macs(graph, m.ops)
        self.ops = dict((Counter(m.ops) - Counter(graph.folded)).most_common())
        self.input_range = _input_range(self.data, m)
        self.size_bytes = len(self.data)
        self._interp: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"TfliteModel({str(self.path)!r}, input {self.input_name} {self.input_shape}, "
                f"outputs {dict(zip(self.output_names, self.output_shapes))})")

    def _interpreter(self) -> Any:
        if self._interp is None:
            from odml.litert import load_interpreter

            try:
                self._interp = load_interpreter(self.data, verify=False)  # verified in __init__
            except ModelFormatError as first:
                from odml.exporters.requantize import RequantizeError, float32_file

                try:  # custom ops odml rewrites as builtin ones (MediaPipe's transposed convolution)
                    self._interp = load_interpreter(float32_file(self.data, str(self.path)), verify=False)
                except (RequantizeError, ModelFormatError):
                    raise TfliteModelError(f"{self.path}: {_tail(first)}") from None
        return self._interp

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output for the batch ``x`` (any size, run one input at a
        time), in the file's order, as float32."""
        from odml.litert import run_outputs

        x = np.asarray(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise TfliteModelError(f"{self.path}: takes inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}")
        if len(x) == 0:
            return [np.zeros((0, *s), np.float32) for s in self.output_shapes]
        with self._lock:
            return run_outputs(self._interpreter(), x.astype(np.float32, copy=False))

    def __call__(self, x: Any, training: bool = False) -> Any:
        """The outputs for the batch ``x`` as tensors (one tensor for a model
        of one output, else a list), in eager code or inside a
        ``tf.function``: LiteRT runs through ``tf.numpy_function``, so no
        gradient flows through it (a teacher's)."""
        del training  # a .tflite has no training mode
        from odml._tf import tf

        T = tf()
        n = len(self.output_names)
        x = T.convert_to_tensor(x)
        if n == 1:
            outs = [T.numpy_function(lambda v: self.predict(v)[0], [T.cast(x, T.float32)], T.float32,
                                     stateful=False, name="litert")]
        else:
            outs = T.numpy_function(lambda v: self.predict(v), [T.cast(x, T.float32)], [T.float32] * n,
                                    stateful=False, name="litert")
        batch = x.shape[0] if x.shape.rank else None
        for o, s in zip(outs, self.output_shapes):
            o.set_shape([batch, *s])
        return outs[0] if n == 1 else list(outs)

    def single_output(self, k: int = 0) -> Callable[..., Any]:
        """A callable like ``self`` that returns only output ``k`` (a
        teacher for a student of one output)."""
        if not 0 <= k < len(self.output_names):
            raise TfliteModelError(f"{self.path}: has {len(self.output_names)} outputs, no output {k}")

        def call(x: Any, training: bool = False) -> Any:
            y = self(x, training)
            return y if len(self.output_names) == 1 else y[k]

        return call


def _input_range(data: bytes, m: Any) -> tuple[float, float] | None:
    from odml.exporters.metadata import read_metadata

    try:
        norm = (read_metadata(data, m.metadata) or {}).get("normalization")
        mean, std = float(norm["mean"][0]), float(norm["std"][0])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None
    if std == 0:
        return None
    return ((_IMAGE_RANGE[0] - mean) / std, (_IMAGE_RANGE[1] - mean) / std)


def _tail(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return s.split(": ", 1)[1] if s.startswith("model: ") else s
