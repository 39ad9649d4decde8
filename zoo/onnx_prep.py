"""ONNX graphs from any exporter (torch.onnx, paddle2onnx, tf2onnx, ...),
made ready for onnx2tf and converted to a tf_keras model.

What onnx2tf needs and real exporters do not give it:

- a static input: paddle2onnx writes a batch of -1 and heights and widths of
  '?', torch.onnx symbolic names; height and width are fixed from
  ``--input-size`` (or the graph's own numbers), a dynamic batch as below,
  anything else that stays dynamic is refused in one line naming the
  dimension;
- a simplified graph: with the shapes static, shape arithmetic (Shape, Gather,
  Concat, Cast feeding Reshape and Resize) folds into constants, which is
  what onnx2tf reads its Reshape targets and Resize scales from;
- names TensorFlow takes as scopes, unique (paddle2onnx leaves nodes
  unnamed; a name such as ``Softmax@0`` is no scope); the graph's input and
  output names are kept where onnx2tf takes them, an output renamed is
  recorded (``info["renamed_outputs"]``) and ``output_names`` stay the
  original ones;
- no graph output that is a constant (a simplifier folds one into an
  initializer, which onnx2tf never turns into a layer): an Identity makes it
  a node's output.

The simplifier: onnxslim (``onnxslim.slim``, pinned in pyproject.toml). On
the corpus of tests/pretrained.py (docs/benchmarks/onnx_corpus.md) onnxslim
makes all seven graphs convert, onnxsim 0.8.1 five (nudenet stops at a
Concat of YOLOv8's head, ddddocr's LSTM recognizer at its LSTM), ONNX's
shape inference alone four; onnxslim also leaves fewer nodes (it writes
constants as initializers: ocr_det 672 -> 326 nodes, onnxsim 494), prints
nothing (onnxsim prints WARNING lines on YOLOv8's head) and is pure Python.
The simplified graph is run by onnxruntime against the original file on a
random input; one that disagrees (or a simplifier that raises) is dropped,
and without onnxslim the graph goes to onnx2tf with only ONNX's shape
inference.

A dynamic batch is kept dynamic first (the model then takes any batch: a
teacher in compress, a batched predict) and fixed to 1 when that does not
convert or does not match onnxruntime at a batch of 2 (ocr_det: its
ConvTranspose needs a static batch).

Conversion runs onnx2tf on the prepared graph (in memory, in a temporary
folder holding a synthetic calibration sample, so nothing is downloaded),
first with its defaults and, when that raises (or makes a model that does
not run or does not match onnxruntime on a random input), with the settings
of ``RETRIES`` one after the other (see there); an op onnx2tf has no
converter for stops at once. A graph that still does not convert gets one
line naming the op type and node it stopped at.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from odml.errors import OdmlError


class OnnxGraphError(OdmlError):
    """An ONNX graph odml cannot prepare for onnx2tf, or onnx2tf cannot convert."""


# onnx2tf settings tried in order after its defaults fail (each a dict of onnx2tf.convert keyword arguments;
# onnx2tf's docstring and README say what each does):
# - disable_strict_mode: strict mode runs onnxruntime on every op to correct transposes; on graphs whose
#   intermediate shapes it tracks wrongly, that correction is what raises;
# - disable_group_convolution: a grouped convolution as separate ones (TF's grouped Conv2D fails on some
#   shapes on CPU); enable_batchmatmul_unfold: a BatchMatMul of rank > 3 as plain MatMuls (attention);
# - replace_to_pseudo_operators: ops TF lacks or maps badly written as primitives (lower case, as onnx2tf reads
#   them), with the two above.
# keep_shape_absolutely_input_names is left out: it keeps the input NCHW, which odml's NHWC data cannot feed.
RETRIES: tuple[dict[str, Any], ...] = (
    {"disable_strict_mode": True},
    {"disable_group_convolution": True, "enable_batchmatmul_unfold": True},
    {"disable_strict_mode": True, "disable_group_convolution": True, "enable_batchmatmul_unfold": True,
     "replace_to_pseudo_operators": ["erf", "gelu", "hardswish", "leakyrelu", "pow", "power", "asin", "acos",
                                     "atan", "abs", "prelu", "neg", "gathernd", "matmulinteger"]},
)

# a name TensorFlow takes as a root scope (tf.Graph.name_scope), with the leading '/' torch.onnx writes
_VALID = re.compile(r"^[A-Za-z0-9./][A-Za-z0-9_.\-/]*$")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")


def _one_line(e: BaseException, n: int = 200) -> str:
    """An exception's message on one line, without what TensorFlow wraps
    round it (the layer it was calling, the function node, the call's
    arguments)."""
    msg = " ".join(str(e).split())
    msg = msg.split(" Call arguments received by layer")[0]
    msg = re.sub(r"\{\{function_node [^}]*\}\} ?", "", msg)
    msg = re.sub(r"Exception encountered when calling layer ['\"]([^'\"]+)['\"] \(type \w+\)\. ?", r"layer \1: ",
                 msg)
    msg = re.sub(r" name: ?$", "", msg)[:n]
    return msg if len(msg) >= 24 else f"{type(e).__name__} {msg}".strip()


@contextlib.contextmanager
def _sample_images_in(folder: Path):
    """onnx2tf checks an image model on 20 sample images, which it downloads
    unless a file of them lies in the working folder: write synthetic ones
    there (nothing is fetched at run time) and work in that folder."""
    import os

    rng = np.random.default_rng(0)
    np.save(folder / "calibration_image_sample_data_20x128x128x3_float32.npy",
            rng.random((20, 128, 128, 3), dtype=np.float32))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def _dims(v: Any) -> list[Any]:
    """A value's dimensions: a positive int, else its symbolic name ('?' when it has none)."""
    out: list[Any] = []
    for d in v.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(str(d.dim_value) if d.HasField("dim_value") else "?")
    return out


def _onnx2tf_ops() -> set[str] | None:
    """The op types onnx2tf has a converter for (its ops/ modules), found without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return None
    ops = Path(next(iter(spec.submodule_search_locations))) / "ops"
    return {f.stem for f in ops.glob("*.py") if not f.stem.startswith("_")} or None


def _all_graphs(g: Any):
    """A graph and every subgraph of its nodes' attributes (If, Loop, Scan bodies)."""
    yield g
    for n in g.node:
        for a in n.attribute:
            if a.HasField("g"):
                yield from _all_graphs(a.g)
            for sub in a.graphs:
                yield from _all_graphs(sub)


class Prepared:
    """What ``prepare`` makes of a graph: the graph onnx2tf converts, the input
    it reads, and what was done."""

    def __init__(self) -> None:
        self.graph: Any = None
        self.in_name = ""  # the input's name in the original file (onnxruntime's)
        self.in_prepared = ""  # its name in the prepared graph
        self.nchw = True
        self.hwc: tuple[int, int, int] = (0, 0, 0)
        self.output_names: list[str] = []  # the original ones, in order
        self.renamed: dict[str, str] = {}  # original output name -> its name in the prepared graph
        self.steps: list[str] = []
        self.ops = 0
        self.ops_prepared = 0
        self.simplifier = ""
        self.dynamic_batch = False  # the graph's batch is dynamic
        self.batch: int | None = 1  # what the prepared graph's batch is (None: still dynamic)


def _input(p: Path, graph: Any, input_size: Any, prep: Prepared, batch: int | None) -> None:
    """Check the graph's one image input and fix its shape: height and width
    from ``input_size`` or the graph; a dynamic batch to ``batch``, or, None,
    to one symbolic dimension ``batch``."""
    inits = {i.name for i in graph.graph.initializer}
    ins = [i for i in graph.graph.input if i.name not in inits]
    if len(ins) != 1:
        names = ", ".join(i.name for i in ins[:6]) + (", ..." if len(ins) > 6 else "")
        raise OnnxGraphError(f"{p}: has {len(ins)} inputs ({names}); odml converts graphs with one image input"
                             if ins else f"{p}: has no input; odml converts graphs with one image input")
    if not graph.graph.output:
        raise OnnxGraphError(f"{p}: has no output")
    v = ins[0]
    prep.in_name = v.name
    if v.type.WhichOneof("value") != "tensor_type" or v.type.tensor_type.elem_type != 1:
        raise OnnxGraphError(f"{p}: input {v.name} is not a float32 tensor; odml converts graphs with one float32 "
                             "image input")
    dims = _dims(v)
    if len(dims) != 4:
        raise OnnxGraphError(f"{p}: input {v.name} has {len(dims)} dimensions ({dims}); odml converts image models "
                             "[batch, C, H, W] (or [batch, H, W, C])")
    if isinstance(dims[0], int) and dims[0] != 1:
        raise OnnxGraphError(f"{p}: input {v.name} has a fixed batch of {dims[0]}; odml runs one image at a "
                             "time (export the graph with a batch of 1 or a dynamic one)")
    fixed = [d if isinstance(d, int) else None for d in dims]
    prep.nchw = not (fixed[3] in (1, 3, 4) and fixed[1] not in (1, 3, 4))
    ci, hi, wi = (1, 2, 3) if prep.nchw else (3, 1, 2)
    h, w = fixed[hi], fixed[wi]
    if input_size is not None:
        from odml.zoo.families.ibn import input_shape

        h, w, _ = input_shape(int(input_size) if str(input_size).isdigit() else input_size)
    elif h is None or w is None:
        raise OnnxGraphError(f"{p}: input {v.name} has a dynamic size {dims}; give --input-size HxW (a dynamic "
                             "batch needs nothing)")
    if fixed[ci] is None:
        raise OnnxGraphError(f"{p}: input {v.name} dimension {ci} ({dims[ci]!r}, its channels) is dynamic; "
                             "--input-size fixes only height and width: export the graph with a fixed number of "
                             "channels")
    prep.hwc = (int(h), int(w), int(fixed[ci]))
    want = [1, prep.hwc[2], prep.hwc[0], prep.hwc[1]] if prep.nchw else [1, *prep.hwc]
    prep.dynamic_batch = dims[0] != 1
    if prep.dynamic_batch:
        prep.steps.append(f"batch {dims[0]!r} " + ("kept dynamic" if batch is None else f"fixed to {batch}"))
    if [dims[hi], dims[wi]] != [want[hi], want[wi]]:
        prep.steps.append(f"height, width {dims[hi]!r}, {dims[wi]!r} fixed to {want[hi]}, {want[wi]}")
    for i, (d, n) in enumerate(zip(v.type.tensor_type.shape.dim, want)):
        d.Clear()
        if i == 0 and prep.dynamic_batch and batch is None:
            d.dim_param = "batch"
        else:
            d.dim_value = batch if i == 0 and prep.dynamic_batch else n


def _clear_shapes(graph: Any) -> None:
    """Forget the shapes the exporter recorded past the input (symbolic ones
    that no longer hold once the input is fixed): each output's dimensions
    become unknown (its rank kept), and shape inference writes them again."""
    for o in graph.graph.output:
        if o.type.HasField("tensor_type") and o.type.tensor_type.HasField("shape"):
            for d in o.type.tensor_type.shape.dim:
                d.Clear()
    del graph.graph.value_info[:]


def _run(session_or_graph: Any, name: str, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    s = session_or_graph
    if not isinstance(s, ort.InferenceSession):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        s = ort.InferenceSession(s.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return s.run(None, {name: x})


def _agrees(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.shape(x) == np.shape(y) and _off(np.asarray(x), np.asarray(y)) <= 1.0
                                    for x, y in zip(a, b))


def _simplifiers() -> list[tuple[str, Any]]:
    """The simplifiers to try, in order (see the module's docstring)."""
    try:
        import onnxslim
    except ImportError:
        return []
    return [("onnxslim", onnxslim.slim)]


def _simplify(graph: Any, prep: Prepared, session: Any) -> Any:
    """The first simplifier's graph that onnxruntime runs to the original's
    outputs on a random input (a batch of 2 where the batch stays dynamic);
    else the graph with ONNX's shape inference."""
    import onnx

    h, w, c = prep.hwc
    n = 2 if prep.batch is None else 1
    x = np.random.default_rng(0).random((n, c, h, w) if prep.nchw else (n, h, w, c), dtype=np.float32)
    want = None
    if session is not None:
        try:
            want = _run(session, prep.in_name, x)
        except Exception:  # noqa: BLE001 - onnxruntime cannot run the original at this size: nothing to check against
            want = None
    tried = []
    for name, simplify in _simplifiers():
        g = onnx.ModelProto()
        g.CopyFrom(graph)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                g = simplify(g)
            if g is None or not len(g.graph.node):
                raise ValueError("simplified to nothing")
            if want is not None and not _agrees(want, _run(g, prep.in_name, x)):
                raise ValueError("outputs differ from the original's")
        except Exception as e:  # noqa: BLE001 - any simplifier failure: try the next, or go without
            tried.append(f"{name} ({_one_line(e, 80)})")
            continue
        prep.simplifier = name
        prep.steps.append(f"simplified with {name}" + (f" after {'; '.join(tried)} failed" if tried else ""))
        return g
    with contextlib.suppress(Exception):  # onnx2tf infers what it can itself
        graph = onnx.shape_inference.infer_shapes(graph)
    prep.steps.append("not simplified" + (f" ({'; '.join(tried)})" if tried else " (no simplifier installed)"))
    return graph


def _rename(graph: Any, prep: Prepared) -> None:
    """Node and tensor names TensorFlow takes as scopes, unique; the graph's
    input and output names kept where they already are."""
    taken: set[str] = set()
    for g in _all_graphs(graph.graph):
        taken |= {n.name for n in g.node} | {t for n in g.node for t in (*n.input, *n.output)}
        taken |= {i.name for i in (*g.input, *g.output, *g.initializer)}

    def fresh(base: str) -> str:
        base = _BAD_CHARS.sub("_", base).rstrip("/") or "t"
        if not _VALID.match(base):
            base = "n" + base
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    def ok(name: str) -> bool:
        # onnx2tf itself writes ':' as '__'; TensorFlow reads a trailing '/' as an absolute scope
        return bool(_VALID.match(name.replace(":", "__"))) and not name.endswith("/")

    tensors: dict[str, str] = {}
    main = graph.graph
    for g in _all_graphs(main):
        for t in [t for n in g.node for t in n.output] + [i.name for i in g.initializer]:
            if t and t not in tensors and not ok(t):
                tensors[t] = fresh(t)
    if not ok(prep.in_prepared):
        tensors[prep.in_prepared] = fresh(prep.in_prepared)
    for t in list(tensors):
        if t in prep.output_names:
            prep.renamed[t] = tensors[t]
    nodes, seen = 0, set()
    for g in _all_graphs(main):
        for n in g.node:
            if not n.name or not ok(n.name) or n.name in seen:
                n.name = fresh(n.name or n.op_type or "node")
                nodes += 1
            seen.add(n.name)
            for i, t in enumerate(n.input):
                if t in tensors:
                    n.input[i] = tensors[t]
            for i, t in enumerate(n.output):
                if t in tensors:
                    n.output[i] = tensors[t]
        for v in (*g.input, *g.output, *g.value_info, *g.initializer):
            if v.name in tensors:
                v.name = tensors[v.name]
    prep.in_prepared = tensors.get(prep.in_prepared, prep.in_prepared)
    if nodes:
        prep.steps.append(f"{nodes} node names made TensorFlow scopes")
    if len(tensors) - len(prep.renamed) > 0:
        prep.steps.append(f"{len(tensors) - len(prep.renamed)} tensor names made TensorFlow scopes")
    if prep.renamed:
        prep.steps.append("outputs renamed: " + ", ".join(f"{a} -> {b}" for a, b in prep.renamed.items()))


def _constant_outputs(graph: Any, prep: Prepared) -> None:
    """A graph output that is an initializer or a Constant's output goes
    through an Identity: onnx2tf makes layers of nodes only."""
    from onnx import helper

    g = graph.graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    fixed = []
    for o in g.output:
        if o.name in consts:
            src = o.name + "_const"
            k = 1
            names = {t for n in g.node for t in (*n.input, *n.output)} | {i.name for i in g.initializer}
            while src in names:
                src, k = f"{o.name}_const{k}", k + 1
            for i in g.initializer:
                if i.name == o.name:
                    i.name = src
            for n in g.node:
                for j, t in enumerate(n.input):
                    if t == o.name:
                        n.input[j] = src
                for j, t in enumerate(n.output):
                    if t == o.name:
                        n.output[j] = src
            g.node.append(helper.make_node("Identity", [src], [o.name], name=f"{o.name}_identity".lstrip("/")))
            fixed.append(o.name)
    if fixed:
        prep.steps.append(f"constant outputs through an Identity: {', '.join(fixed)}")


def prepare(p: Path, graph: Any, input_size: Any = None, session: Any = None, batch: int | None = 1) -> Prepared:
    """The graph made ready for onnx2tf (see the module's docstring); ``graph``
    is not changed. ``session``: onnxruntime on the original, to check the
    simplified graph against; ``batch``: what a dynamic batch becomes (None:
    it stays dynamic)."""
    import onnx

    prep = Prepared()
    prep.batch = batch
    g = onnx.ModelProto()
    g.CopyFrom(graph)
    prep.ops = len(graph.graph.node)
    _input(p, g, input_size, prep, batch)
    if not prep.dynamic_batch:
        prep.batch = 1
    prep.in_prepared = prep.in_name
    prep.output_names = [o.name for o in g.graph.output]
    if len(set(prep.output_names)) != len(prep.output_names):
        raise OnnxGraphError(f"{p}: names an output twice ({', '.join(prep.output_names)})")
    if prep.in_name in prep.output_names:
        raise OnnxGraphError(f"{p}: output {prep.in_name} is its input itself; the graph does not convert as an "
                             "image model")
    _clear_shapes(g)
    g = _simplify(g, prep, session)
    _constant_outputs(g, prep)
    _rename(g, prep)
    prep.ops_prepared = len(g.graph.node)
    prep.graph = g
    return prep


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _failure(e: BaseException, graph: Any, log: str) -> tuple[str, str, str]:
    """(op type, node name, what went wrong) of a failed onnx2tf run; ``log``:
    what it printed (an error it reports before sys.exit)."""
    node = getattr(e, "onnx_op_name", None) or ""
    op = next((n.op_type for n in graph.graph.node if n.name == node), "")
    msg = _one_line(e, 160)
    if isinstance(e, SystemExit) or not str(e).strip():
        lines = [ln for ln in _ANSI.sub("", log).splitlines() if "ERROR" in ln]
        if lines:
            msg = _one_line(Exception(lines[-1].split("ERROR:", 1)[-1]), 160)
    return op, node, msg


class Attempt:
    """One onnx2tf run: the prepared graph, the settings, and what came of it."""

    def __init__(self, prep: Prepared, settings: dict[str, Any]):
        self.prep, self.settings = prep, settings
        self.model: Any = None
        self.failure: tuple[str, str, str] | None = None  # op type, node, message
        self.seconds = 0.0
        self.off = np.inf  # how far its outputs are from onnxruntime's, in tolerances (see _off)
        self.layouts: list[tuple[int, ...] | None] = []  # per output: the transpose of onnxruntime's to match it
        self.shapes: list[tuple[int, ...]] = []  # its outputs' shapes without the batch
        self.structure = ""  # why a model it made is not of the graph's input and outputs


def run_onnx2tf(p: Path, attempt: Attempt) -> Attempt:
    """onnx2tf on ``attempt``'s graph with its settings, in a temporary folder
    (a synthetic calibration sample in it), its output and native logs
    captured; a failure is recorded, not raised."""
    import tempfile

    import onnx
    from odml._tf import quiet_stderr_fd, tf

    tf()
    try:
        import onnx2tf
    except ImportError as e:
        raise OnnxGraphError(f"{p}: converting ONNX needs onnx2tf ({e}); 'make install' installs it") from None
    prep = attempt.prep
    kw: dict[str, Any] = dict(attempt.settings)
    if not prep.nchw:
        kw["keep_nwc_or_nhwc_or_ndhwc_input_names"] = [prep.in_prepared]
    g = onnx.ModelProto()
    g.CopyFrom(prep.graph)  # onnx2tf changes the graph it is given
    log = io.StringIO()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="odml-onnx2tf-") as d, quiet_stderr_fd(), \
            contextlib.redirect_stdout(log), _sample_images_in(Path(d)):
        try:
            attempt.model = onnx2tf.convert(onnx_graph=g, output_folder_path=d, non_verbose=True,
                                            disable_model_save=True, not_use_onnxsim=True,
                                            not_use_opname_auto_generate=True, **kw)
        except BaseException as e:  # onnx2tf reports an unmappable op by raising, or by sys.exit
            if isinstance(e, KeyboardInterrupt):
                raise
            attempt.failure = _failure(e, prep.graph, log.getvalue())
    attempt.seconds = time.perf_counter() - t0
    if attempt.model is None and attempt.failure is None:
        attempt.failure = ("", "", "it returned no model")
    return attempt


def _unconvertible(e: tuple[str, str, str] | None) -> bool:
    """A failure no setting changes: an op onnx2tf has no module for."""
    return e is not None and ("is not yet implemented" in e[2] or "No module named 'onnx2tf.ops." in e[2])


class OnnxModel:
    """An ONNX graph: prepared (see the module's docstring), converted to a
    tf_keras model by onnx2tf (an NCHW input becomes NHWC, what TFLite and
    odml's data use), and run as it is by onnxruntime for parity.

    - ``model``: the tf_keras model, its outputs in the graph's order; it takes
      any batch where the graph's batch is dynamic and converts so
      (``info["batch"]`` None), else a batch of 1;
    - ``output_names``: the graph's own output names, in order;
    - ``output_shapes``: each Keras output's shape without the batch;
    - ``reference(x)``: onnxruntime on the original file, one array per
      output, each laid out like the Keras output (NCHW -> NHWC, NCW -> NWC);
    - ``in_name`` (the original input's), ``nchw``, ``hwc``, ``params``, ``macs``;
    - ``info``: exporter, ops, ops_prepared, steps, settings (the onnx2tf
      settings that worked, {} for its defaults), batch, convert_s, and where
      an output had to be renamed, renamed_outputs."""

    def __init__(self, p: Path, input_size: Any = None):
        import onnx
        from odml.zoo.load import ACCEPTS, ModelFileError, onnx_macs, onnx_tensors

        t0 = time.perf_counter()
        self.path = p
        try:
            graph = onnx.load(str(p))
        except Exception as e:  # noqa: BLE001 - whatever the file is, one line
            raise ModelFileError(f"{p}: not an ONNX model ({type(e).__name__}); odml reads {ACCEPTS}") from None
        onnx_tensors(graph, p)
        known = _onnx2tf_ops()
        if known is not None:
            for n in graph.graph.node:
                if n.op_type not in known:
                    raise OnnxGraphError(f"{p}: onnx2tf cannot convert this ONNX graph: it has no conversion for "
                                         f"op {n.op_type} (node {n.name or '(unnamed)'}"
                                         f"{', domain ' + n.domain if n.domain else ''})")
        _input(p, _copy(graph), input_size, Prepared(), 1)  # the input's checks before onnxruntime's
        self.session = _session(p, ModelFileError)
        prep1 = prepare(p, graph, input_size, self.session)
        self.in_name, self.nchw, self.hwc = prep1.in_name, prep1.nchw, prep1.hwc
        self.output_names = list(prep1.output_names)
        self.params = _float_params(graph)
        h, w, c = self.hwc
        shape = [1, c, h, w] if self.nchw else [1, h, w, c]
        self.macs = onnx_macs(prep1.graph, prep1.in_prepared, shape) or onnx_macs(graph, self.in_name, shape)
        plans: list[tuple[Any, dict[str, Any]]] = []
        if prep1.dynamic_batch:  # first as it is: a model of any batch (a teacher, a batched predict)
            plans.append((lambda: prepare(p, graph, input_size, self.session, batch=None), {}))
        plans += [(lambda: prep1, s) for s in ({}, *RETRIES)]
        done, best, failures = self._convert(p, plans)
        self.model, self._layouts = best.model, best.layouts
        self.output_shapes = best.shapes
        prep = best.prep
        steps = list(prep.steps)
        if not done:
            steps.append(f"no setting matched onnxruntime on a random input (worst output off by "
                         f"{best.off:.3g} of its spread); the closest kept")
        self.info: dict[str, Any] = {
            "exporter": f"{graph.producer_name} {graph.producer_version}".strip() or "unknown",
            "ops": prep.ops, "ops_prepared": prep.ops_prepared, "steps": steps,
            "settings": dict(best.settings), "batch": prep.batch, "attempts": len(failures) + 1,
            "convert_s": round(time.perf_counter() - t0, 2)}
        if prep.renamed:
            self.info["renamed_outputs"] = dict(prep.renamed)

    def _convert(self, p: Path, plans: list) -> tuple[bool, Attempt, list[Attempt]]:
        """Each plan in turn until one converts and matches onnxruntime: (whether
        one matched, the best attempt, the attempts that did not match)."""
        failures: list[Attempt] = []
        best: Attempt | None = None
        for make, settings in plans:
            try:
                prep = make()
            except OnnxGraphError:  # the graph with a dynamic batch does not simplify: the batch-1 plans follow
                continue
            a = run_onnx2tf(p, Attempt(prep, settings))
            if a.model is not None:
                try:
                    self._check_model(p, a)
                except OnnxGraphError as e:  # a model, but not of this graph's input and outputs
                    a.model, a.failure, a.structure = None, ("", "", str(e)), str(e)
                else:
                    if a.off <= 1.0:
                        return True, a, failures
                    if best is None or a.off < best.off:
                        best = a
            failures.append(a)
            if _unconvertible(a.failure):
                break
        if best is not None:
            return False, best, failures
        # what went wrong with the batch of 1 and onnx2tf's defaults says most
        first = next((a for a in failures if a.prep.batch == 1 and not a.settings), failures[0])
        if first.structure:
            raise OnnxGraphError(first.structure)
        op, node, msg = first.failure or ("", "", "it returned no model")
        where = f" at {op or 'a'} node {node}" if node else ""
        tries = f"; {len(failures) - 1} more tries with other settings failed too" if len(failures) > 1 else ""
        raise OnnxGraphError(f"{p}: onnx2tf cannot convert this ONNX graph{where} ({msg}){tries}")

    def _check_model(self, p: Path, a: Attempt) -> None:
        """The converted model's input and outputs against the graph's, and
        its outputs against onnxruntime's on a random input (``a.off``: the
        worst output's mean error in tolerances; ``a.layouts``, ``a.shapes``)."""
        model = a.model
        if len(model.inputs) != 1:
            raise OnnxGraphError(f"{p}: onnx2tf gave a model of {len(model.inputs)} inputs")
        if len(model.outputs) != len(self.output_names):
            raise OnnxGraphError(f"{p}: onnx2tf gave {len(model.outputs)} outputs for the graph's "
                                 f"{len(self.output_names)} ({', '.join(self.output_names)})")
        got = tuple(model.inputs[0].shape[1:])
        if len(got) != 3 or any(g is not None and g != want for g, want in zip(got, self.hwc)):
            raise OnnxGraphError(f"{p}: onnx2tf made an input of shape {list(got)} from {self.in_name} "
                                 f"{list(self.hwc)} (height, width, channels); the graph does not convert as an "
                                 "image model")
        n = 2 if a.prep.batch is None else 1
        x = np.random.default_rng(1).random((n, *self.hwc), dtype=np.float32)
        try:
            ys = model(x)
        except Exception as e:  # noqa: BLE001 - a model that does not run (at this batch): not this one
            raise OnnxGraphError(f"{p}: the model onnx2tf made does not run ({_one_line(e, 120)})") from None
        ys = [np.asarray(y) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
        raw = self._raw(x)
        a.shapes = [tuple(int(d) for d in y.shape[1:]) for y in ys]
        a.layouts, a.off = [], 0.0
        for r, y in zip(raw, ys):
            cands: list[tuple[int, ...] | None] = []
            if r.shape == y.shape:
                cands.append(None)
            if r.ndim >= 3:
                perm = (0, *range(2, r.ndim), 1)
                if r.transpose(perm).shape == y.shape:
                    cands.append(perm)
            if not cands:
                raise OnnxGraphError(f"{p}: onnx2tf made an output of shape {list(y.shape[1:])} where onnxruntime "
                                     f"gives {list(r.shape[1:])}")
            offs = [_off(r if c is None else r.transpose(c), y) for c in cands]
            k = int(np.argmin(offs))
            a.layouts.append(cands[k])
            a.off = max(a.off, offs[k])

    def _raw(self, x: np.ndarray) -> list[np.ndarray]:
        """onnxruntime's outputs as it gives them, one sample at a time, joined on the first axis."""
        xs = x.transpose(0, 3, 1, 2) if self.nchw else x
        try:
            runs = [self.session.run(None, {self.in_name: xs[i:i + 1].astype(np.float32)}) for i in range(len(xs))]
            return [np.concatenate([np.asarray(r[k]) for r in runs]) for k in range(len(runs[0]))]
        except Exception as e:  # noqa: BLE001 - onnxruntime's RuntimeException, Fail...: one line
            raise OnnxGraphError(f"{self.path}: onnxruntime cannot run this graph on an input of "
                                 f"{list(xs.shape[1:])} ({_one_line(e, 160)})") from None

    def reference(self, x: np.ndarray) -> list[np.ndarray]:
        """onnxruntime on the original graph, on NHWC inputs (transposed for
        an NCHW graph): one array per output, each laid out like the Keras
        model's."""
        return [r if t is None else r.transpose(t) for r, t in zip(self._raw(x), self._layouts)]


def _off(r: np.ndarray, y: np.ndarray) -> float:
    """How far ``y`` is from ``r``, in tolerances (at most 1: they agree):
    the mean absolute error against 1% of r's spread plus 1e-4 of its
    largest magnitude (a saturated output, a probability map of a random
    input, has no spread to speak of)."""
    if np.shape(r) != np.shape(y):
        return np.inf
    if r.dtype.kind != "f" or r.size == 0:
        return 0.0 if np.array_equal(r, y) else np.inf
    r, y = r.astype(np.float64), np.asarray(y, np.float64)
    if not np.array_equal(np.isfinite(r), np.isfinite(y)):
        return np.inf
    ok = np.isfinite(r)
    err = float(np.mean(np.abs(r[ok] - y[ok]))) if ok.any() else 0.0
    tol = 1e-2 * float(np.std(r[ok])) + 1e-4 * float(np.max(np.abs(r[ok]), initial=0)) + 1e-6 if ok.any() else 1.0
    return err / tol


def _copy(graph: Any) -> Any:
    import onnx

    g = onnx.ModelProto()
    g.CopyFrom(graph)
    return g


def _float_params(graph: Any) -> int:
    """Float weights: initializers and Constant nodes' values (paddle2onnx
    writes its weights as Constant nodes)."""
    n = sum(int(np.prod(i.dims)) for i in graph.graph.initializer if i.data_type == 1)
    for node in graph.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == 1:
                    n += int(np.prod(a.t.dims))
    return int(n)


def _session(p: Path, error: type) -> Any:
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's Fail, InvalidGraph, NotImplemented...: one message
        msg = " ".join(str(e).split()).split(" failed:")[-1]
        msg = re.sub(r"^/\S+:\d+ [^(]*\(.*?\) (?=[A-Z])", "", msg)  # its C++ source line and signature
        raise error(f"{p}: onnxruntime cannot load this graph ({msg[:240]})") from None
