"""TFLite metadata (the format of tflite-support's metadata_schema.fbs, which
LiteRT's and MediaPipe's metadata readers share): name, version, author,
license, description, what the input is (an image and its normalization, a
text projection, token ids and the packed vocab.txt), what the output is, a
packed labels.txt, and the model card as the ``odml_card`` entry of the
flatbuffer's metadata map, so that a .tflite alone says what it is.

Written and read here in pure Python with the ``flatbuffers`` runtime, the
way the schema lays it out: a ``ModelMetadata`` table (file identifier
``M001``) in a buffer named ``TFLITE_METADATA`` of the model's metadata map,
and the associated files as an uncompressed zip appended to the model (as
tflite-support's MetadataPopulator packs them). No work files, no native
code: tflite-support itself pins protobuf<4 and cannot install beside
TensorFlow 2.21, so odml does not depend on it; a test reads odml's files
back with its MetadataDisplayer where it is installed."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from odml.errors import OdmlError

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"  # what the fields below need (tflite-support's metadata parser 1.0.0 reads them)
LABELS_FILE = "labels.txt"
VOCAB_FILE = "vocab.txt"
CARD_ENTRY = "odml_card"  # the model card (JSON) as an entry of the flatbuffer's own metadata map

# metadata_schema.fbs: union and enum values, and each table's field slots
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # ContentProperties
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
RGB, GRAYSCALE = 1, 2  # ColorSpaceType
TENSOR_AXIS_LABELS, VOCABULARY = 2, 5  # AssociatedFileType
_MODEL = dict(name=0, description=1, version=2, subgraphs=3, author=4, license=5, min_parser_version=7)
_SUBGRAPH = dict(inputs=2, outputs=3)
_TENSOR = dict(name=0, description=1, content=3, process_units=4, stats=5, associated_files=6)
_CONTENT = dict(properties_type=0, properties=1)
_IMAGE = dict(color_space=0)
_UNIT = dict(options_type=0, options=1)
_NORMALIZATION = dict(mean=0, std=1)
_STATS = dict(max=0, min=1)
_FILE = dict(name=0, description=1, type=2)


class MetadataError(OdmlError):
    pass


@dataclass
class ModelInfo:
    """What the metadata says: names and terms, the labels, and the model card
    (family, configuration, what the input means and the output is)."""

    name: str
    version: str = "1"
    author: str = ""
    license: str = ""
    description: str = ""
    labels: list[str] | None = None
    card: Any = None  # ModelCard: input normalization, vocabulary, output name; stored whole


class _Writer:
    """A flatbuffers Builder with the few shapes the metadata needs; children
    are built before the table that points at them."""

    def __init__(self):
        import flatbuffers

        self.b = flatbuffers.Builder(1024)

    def table(self, offsets: dict[int, int | None], bytes_: dict[int, int] | None = None) -> int:
        b = self.b
        slots = [s for s, o in offsets.items() if o is not None] + list(bytes_ or {})
        b.StartObject(max(slots) + 1 if slots else 0)
        for slot, off in offsets.items():
            if off is not None:
                b.PrependUOffsetTRelativeSlot(slot, off, 0)
        for slot, v in (bytes_ or {}).items():
            b.PrependUint8Slot(slot, v, 0)
        return b.EndObject()

    def string(self, s: str | None) -> int | None:
        return None if s is None else self.b.CreateString(s)

    def tables(self, offs: list[int]) -> int:
        self.b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def floats(self, xs: list[float]) -> int:
        self.b.StartVector(4, len(xs), 4)
        for x in reversed(xs):
            self.b.PrependFloat32(float(x))
        return self.b.EndVector()


def _file(w: _Writer, name: str, description: str, kind: int) -> int:
    return w.table({_FILE["name"]: w.string(name), _FILE["description"]: w.string(description)}, {_FILE["type"]: kind})


def _content(w: _Writer, image: bool, color: int = RGB) -> int:
    props = w.table({}, {_IMAGE["color_space"]: color}) if image else w.table({})
    return w.table({_CONTENT["properties"]: props},
                   {_CONTENT["properties_type"]: IMAGE_PROPERTIES if image else FEATURE_PROPERTIES})


def _tensor(w: _Writer, name: str, description: str, content: int, units: int | None = None,
            stats: int | None = None, files: int | None = None) -> int:
    return w.table({_TENSOR["name"]: w.string(name), _TENSOR["description"]: w.string(description),
                    _TENSOR["content"]: content, _TENSOR["process_units"]: units, _TENSOR["stats"]: stats,
                    _TENSOR["associated_files"]: files})


def _input(w: _Writer, spec: Any, vocab: list[str] | None, packed: dict[str, bytes]) -> int:
    """The input tensor's metadata, from the card's input: an image with its
    normalization (mean, std: the model reads (pixel - mean) / std) and value
    range, or features (a text projection, token ids with the packed
    vocabulary, any other tensor)."""
    if spec.kind == "image":
        mean, std = spec.normalization
        norm = w.table({_NORMALIZATION["mean"]: w.floats([mean]), _NORMALIZATION["std"]: w.floats([std])})
        unit = w.table({_UNIT["options"]: norm}, {_UNIT["options_type"]: NORMALIZATION_OPTIONS})
        stats = w.table({_STATS["max"]: w.floats([spec.range[1]]), _STATS["min"]: w.floats([spec.range[0]])})
        return _tensor(w, spec.name, spec.description, _content(w, True), w.tables([unit]), stats)
    files = None
    if vocab:
        packed[VOCAB_FILE] = ("\n".join(vocab) + "\n").encode("utf-8")
        files = w.tables([_file(w, VOCAB_FILE, "WordPiece vocabulary, one token per line, id = line number - 1",
                                VOCABULARY)])
    return _tensor(w, spec.name, spec.description, _content(w, False), files=files)


def metadata_buffer(info: ModelInfo) -> tuple[bytes, dict[str, bytes]]:
    """The ModelMetadata flatbuffer of ``info`` and the files it names, to be packed."""
    w, card, packed = _Writer(), info.card, {}
    inp = _input(w, card.input, card.vocab, packed)
    outs = []
    tensors = [(t.name, t.description) for t in card.output.tensors] or [(card.output.name, card.output.description)]
    # a segmentation output is a map: ImageProperties (grayscale), its classes along the last axis (TFLite
    # Support's ImageSegmenter reads both)
    seg = card.output.task == "segment"
    for i, (name, description) in enumerate(tensors):
        files = None
        if i == 0 and info.labels and card.output.task in ("classify", "segment"):
            packed[LABELS_FILE] = ("\n".join(info.labels) + "\n").encode("utf-8")
            files = w.tables([_file(w, LABELS_FILE, "class labels, one per line (the class ids of the map)" if seg
                                    else "class labels, one per line", TENSOR_AXIS_LABELS)])
        outs.append(_tensor(w, name, description, _content(w, seg and i == 0, GRAYSCALE), files=files))
    sub = w.table({_SUBGRAPH["inputs"]: w.tables([inp]), _SUBGRAPH["outputs"]: w.tables(outs)})
    strings = {k: w.string(v) for k, v in (("name", info.name), ("description", info.description),
                                            ("version", info.version), ("author", info.author),
                                            ("license", info.license), ("min_parser_version", MIN_PARSER_VERSION))}
    root = w.table({_MODEL["subgraphs"]: w.tables([sub]), **{_MODEL[k]: v for k, v in strings.items()}})
    w.b.Finish(root, METADATA_IDENTIFIER)
    return bytes(w.b.Output()), packed


def pack_files(tflite: bytes, files: dict[str, bytes]) -> bytes:
    """``tflite`` with ``files`` appended as an uncompressed zip (readers mmap
    them in place), as the metadata's associated files."""
    if not files:
        return tflite
    buf = io.BytesIO(tflite)
    buf.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buf, "a", compression=zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)  # a fixed date: the same bytes each time
    return buf.getvalue()


def add_metadata(tflite: bytes, info: ModelInfo) -> bytes:
    """Return ``tflite`` with metadata, the model card and the packed files
    (labels, vocabulary) attached; all in memory."""
    meta, files = metadata_buffer(info)
    tflite = add_model_entry(tflite, CARD_ENTRY, info.card.to_json(with_vocab=False).encode("utf-8"))
    tflite = add_model_entry(tflite, METADATA_NAME, meta)
    return pack_files(tflite, files)


class _Table:
    """A flatbuffers table read by field slot (the reader of the tables above)."""

    def __init__(self, buf: bytearray, pos: int):
        from flatbuffers.table import Table

        self.t = Table(buf, pos)

    def _at(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str:
        o = self._at(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8", "replace") if o else ""

    def u8(self, slot: int) -> int:
        import flatbuffers

        o = self._at(slot)
        return self.t.Get(flatbuffers.number_types.Uint8Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> "_Table | None":
        o = self._at(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Table"]:
        o = self._at(slot)
        if not o:
            return []
        start, n = self.t.Vector(o), self._len(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(n)]

    def _len(self, o: int) -> int:
        n = self.t.VectorLen(o)
        if n * 4 > len(self.t.Bytes):
            raise ValueError("a vector longer than its buffer")
        return n

    def floats(self, slot: int) -> list[float]:
        import flatbuffers

        o = self._at(slot)
        if not o:
            return []
        start, n = self.t.Vector(o), self._len(o)
        return [float(self.t.Get(flatbuffers.number_types.Float32Flags, start + 4 * i)) for i in range(n)]


def _root(buf: bytes) -> _Table:
    import flatbuffers

    data = bytearray(buf)
    if len(data) < 8:
        raise ValueError("too short")
    return _Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))


def _read_tables(buf: bytes) -> dict[str, Any]:
    m = _root(buf)
    res: dict[str, Any] = {k: m.string(_MODEL[k]) for k in ("name", "version", "author", "license", "description")}
    for sg in m.tables(_MODEL["subgraphs"]):
        ins, outs = sg.tables(_SUBGRAPH["inputs"]), sg.tables(_SUBGRAPH["outputs"])
        res["inputs"] = [t.string(_TENSOR["name"]) for t in ins]
        res["outputs"] = [t.string(_TENSOR["name"]) for t in outs]
        for t in ins:
            for pu in t.tables(_TENSOR["process_units"]):
                opts = pu.table(_UNIT["options"])
                if pu.u8(_UNIT["options_type"]) == NORMALIZATION_OPTIONS and opts is not None:
                    res["normalization"] = {"mean": opts.floats(_NORMALIZATION["mean"]),
                                            "std": opts.floats(_NORMALIZATION["std"])}
        res["output_content"] = [_content_kind(t) for t in outs]
        res["associated_files"] = [f.string(_FILE["name"]) for t in ins + outs
                                   for f in t.tables(_TENSOR["associated_files"])]
    return res


def _content_kind(t: "_Table") -> str:
    """A tensor's content in words: ``image (RGB)``, ``image (grayscale)``
    (a segmentation map) or ``features``."""
    c = t.table(_TENSOR["content"])
    if c is None or c.u8(_CONTENT["properties_type"]) != IMAGE_PROPERTIES:
        return "features"
    props = c.table(_CONTENT["properties"])
    color = props.u8(_IMAGE["color_space"]) if props is not None else 0
    return f"image ({ {RGB: 'RGB', GRAYSCALE: 'grayscale'}.get(color, 'unknown') })"


def read_metadata(model_bytes: bytes, metadata_buffers: dict[str, bytes]) -> dict[str, Any] | None:
    """The metadata of a model (from its TFLITE_METADATA buffer and packed
    files), or None if it has none. Pure Python: no TensorFlow."""
    buf = metadata_buffers.get(METADATA_NAME)
    if not buf:
        return None
    try:
        res = _read_tables(buf)
    except Exception as e:  # a damaged buffer: flatbuffers reads past its end, or finds nonsense
        return {"error": f"unreadable metadata ({type(e).__name__})"}
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
            if LABELS_FILE in z.namelist():
                res["labels"] = z.read(LABELS_FILE).decode("utf-8").splitlines()
            if VOCAB_FILE in z.namelist():
                res["vocab_size"] = len(z.read(VOCAB_FILE).decode("utf-8").splitlines())
    except (zipfile.BadZipFile, ValueError, UnicodeDecodeError):
        pass
    card = metadata_buffers.get(CARD_ENTRY)
    if card:
        try:
            d = json.loads(bytes(card).decode("utf-8"))
            res["family"], res["task"] = d.get("family"), d.get("task")
        except (ValueError, UnicodeDecodeError, AttributeError):
            res["family"] = None
    return res


def add_model_entry(tflite: bytes, name: str, data: bytes) -> bytes:
    """``tflite`` with one more entry ``name`` in the flatbuffer's metadata
    map (Model.metadata -> a buffer), replacing one of that name."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from odml.flatbuffer import pack_tflite

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers = list(model.buffers or []) + [buf]
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
                      != name] + [entry]
    return pack_tflite(model, len(tflite) + len(data))

