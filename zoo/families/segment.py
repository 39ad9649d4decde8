"""Semantic segmentation in odml's spec language: DeepLabv3+ on
MobileNetEdgeTPUV2 (xs, s, m) and Autoseg-EdgeTPU (xs, s, the searched
backbones with the BiFPN head), after the TensorFlow Model Garden
(official/projects/edgetpu/vision: configs/semantic_segmentation_config.py,
`deeplabv3plus_mobilenet_edgetpuv2_{xs,s,m}_ade20k_32`;
configs/semantic_segmentation_searched_config.py and
modeling/mobilenet_edgetpu_v2_model_blocks.py, `autoseg_edgetpu_{xs,s}`;
32 ADE20K classes at 512x512). The configuration is a
:class:`~odml.zoo.segspec.SegSpec`: a backbone of the spec language and a
decoder head, counted without TensorFlow."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from odml.errors import SpecError
from odml.zoo.families.ibn import _check_width, _size_arg, fit_groups, input_shape, mobilenet_edgetpu_v2
from odml.zoo.family import TRAIN_IMAGES, Counts, Family, InputSpec, OutputSpec
from odml.zoo.registry import register_family
from odml.zoo.segspec import SegHead, SegSpec
from odml.zoo.spec import Block, Head, ModelSpec, Stem, expanded_filters, round_filters

# Autoseg-EdgeTPU's searched backbones (Model Garden: mobilenet_edgetpu_v2_model_blocks.py,
# autoseg_edgetpu_backbone_{xs,s}): (filters, kernel, repeats, expansion, stride, fused, skip) after a 3x3 stem
# of 32; filters rounded to a multiple of 4 (depth_divisor 4: the s backbone's 18 becomes 20)
AUTOSEG = {
    "xs": [(12, 3, 1, 1, 1, True, True), (24, 3, 1, 6, 2, True, True), (24, 3, 1, 3, 1, False, True),
           (60, 3, 1, 3, 2, True, True), (40, 3, 1, 6, 1, False, True), (40, 5, 1, 3, 2, False, True),
           (40, 3, 1, 6, 1, False, True), (120, 3, 1, 6, 1, True, True), (168, 3, 1, 6, 1, False, True),
           (84, 5, 1, 6, 1, False, True), (84, 5, 1, 3, 1, False, True), (84, 5, 1, 1, 2, False, False),
           (288, 1, 1, 6, 1, True, False), (288, 5, 1, 1, 1, False, False), (96, 1, 1, 3, 1, True, False),
           (96, 5, 1, 1, 1, False, False), (96, 1, 1, 6, 1, True, False), (96, 5, 1, 1, 1, False, False),
           (96, 1, 1, 6, 1, True, False), (480, 5, 1, 3, 1, False, True)],
    "s": [(12, 3, 1, 1, 1, True, True), (36, 3, 1, 6, 2, True, True), (18, 5, 1, 3, 1, False, True),
          (60, 5, 1, 6, 2, True, True), (60, 3, 1, 3, 1, False, True), (120, 5, 1, 6, 2, False, True),
          (120, 3, 1, 3, 1, False, True), (120, 5, 1, 6, 1, False, True), (112, 3, 1, 6, 1, False, True),
          (112, 5, 2, 6, 1, False, True), (112, 5, 1, 1, 2, False, False), (192, 1, 1, 6, 1, True, False),
          (192, 5, 1, 1, 1, False, False), (96, 1, 1, 6, 1, True, False), (96, 5, 1, 3, 1, False, True),
          (96, 5, 1, 1, 1, False, False), (192, 1, 1, 6, 1, True, False), (192, 5, 1, 1, 1, False, False),
          (160, 1, 1, 3, 1, True, False)],
}

# the Model Garden README's parameter counts (32 classes) and its ADE20K-32 mIoU, for checks and `zoo list`
REFERENCE = {"deeplabv3plus_edgetpu_xs": (3.6e6, 56.02), "deeplabv3plus_edgetpu_s": (5.2e6, 59.43),
             "deeplabv3plus_edgetpu_m": (7.7e6, 59.81), "autoseg_edgetpu_xs": (2.9e6, 59.64),
             "autoseg_edgetpu_s": (3.1e6, 61.31)}
DEEPLAB = "deeplabv3plus_edgetpu_"
AUTOSEG_PREFIX = "autoseg_edgetpu_"


def _backbone(name: str, input_size: Any, width: float) -> ModelSpec:
    if name.startswith(DEEPLAB):
        mb = mobilenet_edgetpu_v2(name[len(DEEPLAB):], num_classes=2, input_size=input_size, width=width)
        return mb.replace(name=name, head=Head(filters=0, dropout=0.0))
    size = name[len(AUTOSEG_PREFIX):]
    blocks = []
    for filters, k, repeats, e, s, fused, skip in AUTOSEG[size]:
        for r in range(repeats):
            blocks.append(Block(type="ibn_fused" if fused else "ibn_dw", kernel=k, expansion=e,
                                stride=s if r == 0 else 1, filters=round_filters(_round4(filters), width, 4),
                                skip=skip))
    bb = ModelSpec(name=name, input_shape=input_shape(input_size), num_classes=2,
                   stem=Stem(filters=round_filters(32, width, 4), kernel=3, stride=2), blocks=blocks,
                   head=Head(filters=0, dropout=0.0))
    return bb


def _round4(n: int) -> int:
    """To a multiple of 4 (the Model Garden's depth_divisor for these backbones)."""
    return max(4, (int(n) + 2) // 4 * 4)


def segmentation_spec(name: str, num_classes: int = 32, input_size: Any = 512, width: float = 1.0) -> SegSpec:
    width = _check_width(width)
    bb = _backbone(name, input_size, width)
    if name.startswith(DEEPLAB):
        head = SegHead(kind="deeplabv3plus", filters=round_filters(256, width), aspp_filters=round_filters(128, width),
                       low_filters=round_filters(48, width))
    else:
        head = SegHead(kind="bifpn", filters=round_filters(96, width), min_level=3, max_level=8, repeats=4)
    spec = SegSpec(name=name, backbone=bb, head=head, num_classes=int(num_classes))
    spec.validate(name)
    return spec


@register_family
class Segment(Family):
    name = "segmentation"
    task = "segment"
    noun = "a semantic segmentation model"
    zoo_task = "semantic_segmentation"
    title = ("semantic segmentation in odml's spec language: DeepLabv3+ on MobileNetEdgeTPUV2 and "
             "Autoseg-EdgeTPU's BiFPN (TensorFlow Model Garden)")
    config_type = SegSpec
    width_range = (0.05, 4.0)
    file_suffixes = (".json", ".yaml", ".yml")
    trainer = "segment"
    train_options = TRAIN_IMAGES - {"sets", "distribute"}  # (the segmentation loop runs on one device)
    train_defaults = {"batch_size": 16, "learning_rate": 5e-3}
    student_family = "segmentation"

    def models(self) -> dict[str, str]:
        out = {f"{DEEPLAB}{s}": f"DeepLabv3+ on MobileNetEdgeTPUV2-{s.upper()} (Model Garden, ADE20K-32)"
               for s in ("xs", "s", "m")}
        out.update({f"{AUTOSEG_PREFIX}{s}": f"Autoseg-EdgeTPU-{s.upper()}: searched backbone, BiFPN head "
                    "(Model Garden, ADE20K-32)" for s in AUTOSEG})
        return out

    def config(self, name: str) -> SegSpec:
        if name not in self.models():
            raise SpecError(f"{self.name}: no zoo entry {name!r}")
        return segmentation_spec(name)

    def configure(self, name: str, classes: int | None = None, input_size: Any = None, width: float | None = None,
                  sets: dict[str, Any] | None = None) -> SegSpec:
        if sets:
            raise SpecError(f"{name}: --set is not offered for segmentation models; write a spec file instead")
        kw = {"num_classes": classes, "input_size": _size_arg(input_size), "width": width}
        return segmentation_spec(name, **{k: v for k, v in kw.items() if v is not None})

    def setting_names(self) -> list[str]:
        return []

    def load_file(self, path: str, classes: int | None = None, input_size: Any = None,
                  width: float | None = None) -> SegSpec:
        """A segmentation spec file (JSON/YAML: ``backbone``, ``head``, ...), with
        the class and input-size overrides."""
        from odml.documents import read_document
        from odml.errors import NotThisFormat

        doc = read_document(path, "spec", SpecError)
        if not isinstance(doc, dict) or "backbone" not in doc:
            raise NotThisFormat(f"{path}: not a segmentation spec (no 'backbone')")
        spec = SegSpec.from_dict(doc, str(path))
        if width is not None and width != 1.0:
            raise SpecError(f"{path}: --width applies to zoo names; edit the spec's filters instead")
        if classes is not None:
            spec = spec.replace(num_classes=int(classes))
        if input_size is not None:
            spec = self.with_input_size(spec, input_size)
        return self.validate(spec, str(path))

    def validate(self, cfg: SegSpec, where: str = "") -> SegSpec:
        cfg.validate(where or cfg.name)
        return cfg

    def with_classes(self, cfg: SegSpec, n: int) -> SegSpec:
        return cfg.replace(num_classes=int(n))

    def with_input_size(self, cfg: SegSpec, size: Any) -> SegSpec:
        h, w, _ = input_shape(_size_arg(size))
        return cfg.replace(backbone=cfg.backbone.replace(input_shape=(h, w, cfg.input_shape[2])))

    def config_from_dict(self, d: dict[str, Any], where: str = "config") -> SegSpec:
        return SegSpec.from_dict(d, where)

    def config_to_dict(self, cfg: SegSpec) -> dict[str, Any]:
        return cfg.to_dict()

    def line(self, cfg: SegSpec) -> str:
        return cfg.to_line()

    def count(self, cfg: SegSpec) -> Counts:
        return Counts(cfg.params, cfg.macs)

    def build(self, cfg: SegSpec, name: str | None = None) -> Any:
        from odml.zoo.segbuild import build_segmentation

        return build_segmentation(cfg)

    def inputs(self, cfg: SegSpec, vocab: list[str] | None = None) -> InputSpec:
        return InputSpec("image", cfg.input_shape, "float32", (0.0, 1.0))

    def outputs(self, cfg: SegSpec) -> OutputSpec:
        shape = cfg.output_shape
        if cfg.finalize:
            return OutputSpec("segment", "labels", cfg.num_classes,
                              f"the label map ({'x'.join(map(str, shape))}: {cfg.finalize} after the logits)",
                              shape=shape)
        h, w, c = shape
        return OutputSpec("segment", "logits", cfg.num_classes,
                          f"per-pixel class scores at stride {cfg.head.stride} ({h}x{w}x{c}; argmax is the label "
                          "map)", shape=(h, w, c))

    def blocks(self, cfg: SegSpec) -> list[dict[str, Any]]:
        return cfg.layers()

    def data_hint(self) -> str:
        return ("'shapes-seg' (generated scenes with masks), or a folder of images/ and masks/ (VOC's JPEGImages/ "
                "and SegmentationClass/, ADE20K's images/ and annotations/)")

    def read(self, card: Any, data: str, val_split: float = 0.2, seed: int = 0, **options: Any) -> Any:
        from odml.data.segmentation import load_segmentation

        if options.get("val_data"):
            raise SpecError("--val-data is not offered for segmentation data yet; the split is --val-split")
        h, w, c = card.input.shape
        return load_segmentation(data, (h, w), c, val_split, seed, classes=options.get("classes"),
                                 split=options.get("split", "val"))

    def score(self, logits: Any, y: Any) -> dict[str, Any]:
        """mIoU, pixel accuracy and per-class IoU of ``logits`` (N, h, w,
        classes; at the model's stride, resized bilinearly to the masks ``y``
        as training does; a finalized label map (N, H, W) as it is) against
        the masks, 255 ignored."""
        import numpy as np

        from odml.data.segmentation import confusion, seg_scores
        from odml.numeric import resize_bilinear

        logits, y = np.asarray(logits), np.asarray(y)
        if logits.ndim == 4:
            n_classes = logits.shape[-1]
            pred = np.concatenate([resize_bilinear(logits[i:i + 4], *y.shape[1:3]).argmax(-1)
                                   for i in range(0, len(logits), 4)])  # 4 at a time: 512x512x32 maps are large
        else:
            pred = np.rint(logits).astype(np.int64)
            if pred.shape[1:] != y.shape[1:]:  # a label map finalized at another size: nearest neighbour
                ry = (np.arange(y.shape[1]) + 0.5) * pred.shape[1] / y.shape[1]
                rx = (np.arange(y.shape[2]) + 0.5) * pred.shape[2] / y.shape[2]
                pred = pred[:, ry.astype(np.int64)][:, :, rx.astype(np.int64)]
            n_classes = int(max(pred.max(), y[y != 255].max(initial=0))) + 1
        s = seg_scores(confusion(pred, y, n_classes))
        return {"accuracy": s["pixel_accuracy"], "miou": s["miou"], "iou": s["iou"]}

    def learned_nothing(self, scores: dict[str, Any], y: Any, names: list[str]) -> str | None:
        """The classes the masks hold that the model never finds (IoU 0:
        not one of their pixels given that class); when it finds one class
        at most, it learned nothing from its input (a segmenter that says
        background everywhere)."""
        import numpy as np

        iou = scores.get("iou") or []
        if not any(v == 0 for v in iou):
            return None
        y = np.asarray(y)
        counts = np.bincount(y[y != 255].ravel().astype(np.int64), minlength=len(iou))
        if not counts.sum():
            return None
        missed = [c for c, v in enumerate(iou) if v == 0 and counts[c]]
        if not missed:
            return None
        found = [c for c, v in enumerate(iou) if v and counts[c]]
        said = ", ".join(f"{names[c] if c < len(names) else c!r} ({counts[c] / counts.sum():.1%} of the pixels; IoU 0)"
                         for c in missed)
        return f"never finds {said}" + (", as a model that learned nothing from its input" if len(found) <= 1 else "")

    def finalize(self, cfg: SegSpec, method: str, model: Any = None) -> tuple[SegSpec, Any]:
        from odml.zoo.segspec import finalize_steps

        finalize_steps(method)
        if cfg.finalize:
            raise SpecError(f"--finalize {method}: {cfg.name} is finalized already ({cfg.finalize})")
        out = self.validate(cfg.replace(finalize=method), cfg.name)
        if model is None:
            return out, None
        from odml.zoo.segbuild import with_finalize

        return out, with_finalize(model, out)

    # ---- compression: students of a segmentation teacher, distilled per pixel -------------------
    def num_classes(self, cfg: SegSpec) -> int:
        return cfg.num_classes

    def scale(self, cfg: SegSpec, width: float, where: str = "") -> SegSpec:
        """Every filter count of the backbone and the head times ``width``
        (rounded to a multiple of 4, the backbones' divisor; the head's of 8)."""
        width = _check_width(width)
        bb = cfg.backbone
        stem = replace(bb.stem, filters=round_filters(bb.stem.filters, width, 4))
        blocks, cin = [], stem.filters
        for b in bb.blocks:  # a grouped block keeps the most groups that divide its narrower channels
            nb = replace(b, filters=round_filters(b.filters, width, 4))
            if b.type in ("ibn_gc", "ibn_grouped"):
                nb = replace(nb, groups=fit_groups(b.groups, cin, expanded_filters(b, cin)))
            blocks.append(nb)
            cin = nb.filters
        bb = bb.replace(stem=stem, blocks=blocks)
        h = cfg.head
        head = replace(h, filters=round_filters(h.filters, width), aspp_filters=round_filters(h.aspp_filters, width),
                       low_filters=round_filters(h.low_filters, width))
        return self.validate(cfg.replace(backbone=bb, head=head), where or cfg.name)

    def check_teacher(self, teacher: Any) -> None:
        if teacher.input.kind != "image" or len(teacher.input.shape) != 3:
            raise SpecError(f"input shape {tuple(teacher.input.shape)} is not an image (height, width, channels)")
        if teacher.num_classes < 2:
            raise SpecError(f"its output {list(teacher.output.shape)} has one channel: odml cannot tell a "
                            "probability from a logit there; give a model with a score per class")

    def _fit(self, cfg: SegSpec, teacher: Any) -> SegSpec:
        h, w, _ = teacher.input.shape
        return self.with_input_size(cfg.replace(num_classes=teacher.num_classes, finalize=""), (h, w))

    def student_base(self, teacher: Any) -> tuple[str, SegSpec]:
        """A segmentation teacher of odml's: its own architecture, narrowed;
        any other: Autoseg-EdgeTPU-XS at the teacher's input and classes."""
        cfg = teacher.card.config
        if isinstance(cfg, SegSpec):
            return self.label(cfg.name), self._fit(cfg, teacher)
        base = f"{AUTOSEG_PREFIX}xs"
        return self.label(base), self._fit(self.config(base), teacher)

    def derived(self, base: SegSpec, width: float, teacher: Any) -> SegSpec:
        return self.scale(base, width)

    def student(self, item: str, width: float | None, teacher: Any) -> tuple[str, SegSpec]:
        return self._named_student(item, width, teacher, self.load_file, lambda spec: self._fit(spec, teacher))

    def describe(self, cfg: SegSpec, name: str = "") -> str:
        ref = REFERENCE.get(name)
        return f"published: {ref[0] / 1e6:.1f}M params, {ref[1]:.2f}% mIoU (ADE20K-32)" if ref else ""

    def block_spec(self, cfg: SegSpec) -> ModelSpec:
        """The backbone (its classification head unused): what latency
        prediction counts in units; the decoder is the rest of the model."""
        return cfg.backbone

    def unit_of(self, cfg: SegSpec, layer: str) -> str | None:
        """Layers are named by ``zoo/segbuild.py``: ``stem_*``, ``block<i>_*``, then the head's."""
        import re

        m = re.match(r"^(stem|block\d+)(?:_|$)", layer)
        return m[1] if m else "head"

