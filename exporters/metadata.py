"""TFLite metadata (the format of tflite-support): name, version, author,
license, description, what the input is (an image and its normalization, a
text projection, token ids and the packed vocab.txt), what the output is, a
packed labels.txt, and the model card as the ``odml_card`` entry of the
flatbuffer's metadata map, so that a .tflite alone says what it is.

Written with the ecosystem's own MetadataPopulator; read back here without
TensorFlow, with the generated schema and zipfile. tflite-support 0.4.4 pins
protobuf<4, so odml installs it with ``--no-deps`` (the metadata code needs
only flatbuffers) and preloads libusb from the ``libusb-package`` wheel, which
its native extension links against."""

from __future__ import annotations

import ctypes
import glob
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odml.errors import OdmlError
from odml.files import write_file

METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE = "labels.txt"
VOCAB_FILE = "vocab.txt"
CARD_ENTRY = "odml_card"  # the model card (JSON) as an entry of the flatbuffer's own metadata map
PACKED = (LABELS_FILE, VOCAB_FILE)  # written to the stage folder, packed into the .tflite


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


def _schema():
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as mfb
    except ImportError:
        raise MetadataError(
            "TFLite metadata needs tflite-support: pip install --no-deps tflite-support==0.4.4 (see README)"
        ) from None
    return mfb


def ecosystem_metadata_module():
    """tflite-support's metadata module (MetadataPopulator, MetadataDisplayer)."""
    try:
        import libusb_package

        for lib in glob.glob(os.path.join(os.path.dirname(libusb_package.__file__), "libusb-1.0*.so*")):
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            break
    except (ImportError, OSError):
        pass  # a system libusb may still be there
    try:
        from tensorflow_lite_support.metadata.python import metadata as md
    except ImportError as e:
        raise MetadataError(f"cannot load tflite-support's metadata writer: {e}") from None
    return md


def _input(mfb, spec: Any, vocab: list[str] | None, workdir: Path, files: list[str]):
    """The input tensor's metadata, from the card's input: an image with its
    normalization (mean, std: the model reads (pixel - mean) / std) and value
    range, or features (a text projection, token ids with the packed
    vocabulary, any other tensor)."""
    inp = mfb.TensorMetadataT()
    inp.name, inp.description = spec.name, spec.description
    inp.content = mfb.ContentT()
    if spec.kind == "image":
        inp.content.contentProperties = mfb.ImagePropertiesT()
        inp.content.contentProperties.colorSpace = mfb.ColorSpaceType.RGB
        inp.content.contentPropertiesType = mfb.ContentProperties.ImageProperties
        norm = mfb.ProcessUnitT()
        norm.optionsType = mfb.ProcessUnitOptions.NormalizationOptions
        norm.options = mfb.NormalizationOptionsT()
        mean, std = spec.normalization
        norm.options.mean, norm.options.std = [float(mean)], [float(std)]
        inp.processUnits = [norm]
        stats = mfb.StatsT()
        stats.max, stats.min = [float(spec.range[1])], [float(spec.range[0])]
        inp.stats = stats
        return inp
    inp.content.contentProperties = mfb.FeaturePropertiesT()
    inp.content.contentPropertiesType = mfb.ContentProperties.FeatureProperties
    if vocab:
        inp.associatedFiles = [_packed_file(mfb, workdir, files, VOCAB_FILE, vocab, mfb.AssociatedFileType.VOCABULARY,
                                            "WordPiece vocabulary, one token per line, id = line number - 1")]
    return inp


def _packed_file(mfb, workdir: Path, files: list[str], name: str, lines: list[str], kind: int, description: str):
    """An associated file's metadata; its text is written to ``workdir`` and
    listed in ``files`` to be packed into the model."""
    f = mfb.AssociatedFileT()
    f.name, f.description, f.type = name, description, kind
    path = workdir / name
    write_file(path, "\n".join(lines) + "\n")
    files.append(str(path))
    return f


def add_metadata(tflite: bytes, info: ModelInfo, workdir: Path, quantized_input: bool = False) -> bytes:
    """Return ``tflite`` with metadata (and a packed labels file) attached."""
    import flatbuffers

    mfb = _schema()
    md = ecosystem_metadata_module()
    meta = mfb.ModelMetadataT()
    meta.name, meta.version, meta.author, meta.license = info.name, info.version, info.author, info.license
    meta.description = info.description
    files: list[str] = []
    card = info.card
    inp = _input(mfb, card.input, card.vocab, workdir, files)
    outs = []
    for name, description in ([(t.name, t.description) for t in card.output.tensors] or
                              [(card.output.name, card.output.description)]):
        out = mfb.TensorMetadataT()
        out.name, out.description = name, description
        out.content = mfb.ContentT()
        out.content.contentProperties = mfb.FeaturePropertiesT()
        out.content.contentPropertiesType = mfb.ContentProperties.FeatureProperties
        outs.append(out)
    if info.labels and card.output.task == "classify":
        outs[0].associatedFiles = [_packed_file(mfb, workdir, files, LABELS_FILE, info.labels,
                                                mfb.AssociatedFileType.TENSOR_AXIS_LABELS, "class labels, one per line")]
    sub = mfb.SubGraphMetadataT()
    sub.inputTensorMetadata, sub.outputTensorMetadata = [inp], outs
    meta.subgraphMetadata = [sub]
    b = flatbuffers.Builder(0)
    b.Finish(meta.Pack(b), md.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    tflite = add_model_entry(tflite, CARD_ENTRY, card.to_json(with_vocab=False).encode("utf-8"))
    # the populator works on a file: ours, in the work folder (its own temporary file, when it cannot be written,
    # leaves a half-made object whose finalizer fails at exit)
    model_file = workdir / "model_with_metadata.tflite"
    write_file(model_file, tflite)
    pop = md.MetadataPopulator.with_model_file(str(model_file))
    pop.load_metadata_buffer(bytes(b.Output()))
    if files:
        pop.load_associated_files(files)
    try:
        pop.populate()
    except Exception as e:
        from odml.files import write_failure

        failed = write_failure(e)
        if failed:
            raise failed from None
        raise MetadataError(f"writing TFLite metadata failed: {e}") from None
    return model_file.read_bytes()


def read_metadata(model_bytes: bytes, metadata_buffers: dict[str, bytes]) -> dict[str, Any] | None:
    """The metadata of a model (from its TFLITE_METADATA buffer and packed
    files), or None if it has none. Pure Python: no TensorFlow."""
    buf = metadata_buffers.get(METADATA_NAME)
    if not buf:
        return None
    mfb = _schema()
    try:
        m = mfb.ModelMetadataT.InitFromObj(mfb.ModelMetadata.GetRootAsModelMetadata(bytearray(buf), 0))
    except Exception as e:
        return {"error": f"unreadable metadata ({type(e).__name__})"}

    def s(v):
        return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else (v or "")

    res: dict[str, Any] = {"name": s(m.name), "version": s(m.version), "author": s(m.author),
                           "license": s(m.license), "description": s(m.description)}
    for sg in m.subgraphMetadata or []:
        res["inputs"] = [s(t.name) for t in sg.inputTensorMetadata or []]
        res["outputs"] = [s(t.name) for t in sg.outputTensorMetadata or []]
        for t in sg.inputTensorMetadata or []:
            for pu in t.processUnits or []:
                if pu.optionsType == mfb.ProcessUnitOptions.NormalizationOptions:
                    res["normalization"] = {"mean": [float(x) for x in pu.options.mean],
                                            "std": [float(x) for x in pu.options.std]}
        assoc = [s(f.name) for t in (sg.inputTensorMetadata or []) + (sg.outputTensorMetadata or [])
                 for f in (t.associatedFiles or [])]
        res["associated_files"] = assoc
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

