"""Semantic segmentation (issue 41, first part): DeepLabv3+ and Autoseg-EdgeTPU
as specs counted without TensorFlow and built to the same counts, the
shapes-seg scenes and image/mask folders (with what bad input gets), mIoU,
and `odml train` on shapes-seg."""

import json

import numpy as np
import pytest
from helpers import assert_one_line_error

from odml.data.segmentation import IGNORE, confusion, load_seg_folder, load_shapes_seg, seg_scores
from odml.errors import DataError, SpecError
from odml.zoo.segspec import SegHead, SegSpec, bifpn_nodes, parse_head

ZOO = ("deeplabv3plus_edgetpu_xs", "deeplabv3plus_edgetpu_s",
       "deeplabv3plus_edgetpu_m", "autoseg_edgetpu_xs", "autoseg_edgetpu_s")


@pytest.mark.fast
def test_bifpn_graph_is_efficientdets():
    nodes = bifpn_nodes(3, 8)  # inputs P3..P8 are ids 0..5
    assert nodes == [(7, [4, 5]), (6, [3, 6]), (5, [2, 7]), (4, [1, 8]), (3, [0, 9]),
                     (4, [1, 9, 10]), (5, [2, 8, 11]), (6, [3, 7, 12]), (7, [4, 6, 13]), (8, [5, 14])]
    assert len(bifpn_nodes(3, 5)) == 4


@pytest.mark.fast
def test_zoo_specs_round_trip_and_say_their_stride():
    from odml.zoo.registry import resolve

    for name in ZOO:
        c = resolve(name, classes=11, input_size=128)
        spec = c.config
        assert isinstance(spec, SegSpec) and spec.num_classes == 11 and spec.input_shape == (128, 128, 3)
        again = SegSpec.from_dict(json.loads(spec.to_json()), name)
        assert again.to_line() == spec.to_line() and again.params == spec.params
        assert parse_head(spec.head.to_line()) == spec.head
        stride = 8 if name.startswith("autoseg") else 16
        assert spec.output_shape == (128 // stride, 128 // stride, 11)
        assert c.family.outputs(spec).measure == "pixels"
    deeplab = resolve(ZOO[0]).config.endpoints()
    assert deeplab[4][3] == 144 and deeplab[5][3] == 192  # the stride-16 and -32 features of MobileNetEdgeTPUV2-XS
    auto = resolve("autoseg_edgetpu_s").config
    assert [e[3] for lv, e in sorted(auto.endpoints().items()) if lv >= 3] == [60, 112, 160]
    assert auto.backbone.blocks[2].filters == 20  # the searched 18 rounded to the depth divisor 4


@pytest.mark.fast
def test_bad_specs_are_refused():
    bb = "stem_k3_s2_c16 dw_k3_e1_s2_c16 dw_k3_e2_s2_c24"  # reaches stride 8 only
    with pytest.raises(SpecError, match="stride 16"):
        SegSpec.from_dict({"backbone": bb, "head": {"kind": "deeplabv3plus"}, "input_shape": [64, 64, 3]})
    with pytest.raises(SpecError, match="unknown key"):
        SegSpec.from_dict({"backbone": bb, "head": {"kind": "bifpn", "layers": 3}})
    with pytest.raises(SpecError, match="kind"):
        SegHead(kind="unet").validate("h")
    with pytest.raises(SpecError, match="cannot parse head"):
        parse_head("seg_fpn_c96")


@pytest.mark.fast
def test_miou_and_pixel_accuracy():
    y = np.array([[[0, 0, 1, 1], [0, 0, 1, IGNORE]]])
    pred = np.array([[[0, 1, 1, 1], [0, 0, 1, 0]]])
    s = seg_scores(confusion(pred, y, 3))
    # class 0: 3 right of 4 truth, 1 wrong as 1 -> IoU 3/4; class 1: 3 right, union 4 -> 3/4; class 2 absent
    assert s["iou"] == [0.75, 0.75, None] and s["miou"] == pytest.approx(0.75)
    assert s["pixel_accuracy"] == pytest.approx(6 / 7)


@pytest.mark.fast
def test_shapes_seg_scenes_are_the_shapes_scenes_with_masks():
    from odml.data.images import load_shapes

    seg = load_shapes_seg("shapes-seg:50", (32, 32))
    cls = load_shapes("shapes:100", (32, 32))
    assert seg.num_classes == 11 and seg.class_names[0] == "background"
    x, m = seg.everything()
    assert x.shape == (50, 32, 32, 3) and m.shape == (50, 32, 32)
    from odml.data.shapes import generate, generate_scenes

    gx, _ = generate(20, 32)
    sx, sm = generate_scenes(20, 32)
    assert (gx == sx).all()  # the same scenes: shapes' images did not change
    for i in range(20):  # each mask holds the background and its own figure
        assert set(np.unique(sm[i])) <= {0, i % 10 + 1} and (sm[i] == i % 10 + 1).sum() > 10
    assert cls.num_classes == 10


def _folder(tmp_path, n=6, size=(40, 30), mask_size=None, bad_id=None, drop=None):
    from PIL import Image

    root = tmp_path / "seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        w, h = size
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.jpg")
        if drop == i:
            continue
        mw, mh = mask_size if (mask_size and i == 2) else size
        m = np.zeros((mh, mw), np.uint8)
        m[: mh // 2] = 1
        m[0, 0] = IGNORE
        if bad_id is not None and i == 3:
            m[1, 1] = bad_id
        Image.fromarray(m).save(root / "masks" / f"im{i}.png")
    return root


@pytest.mark.fast
def test_image_and_mask_folders_and_what_bad_input_gets(tmp_path):
    ds = load_seg_folder(_folder(tmp_path), (16, 16))
    assert ds.num_classes == 2 and ds.x_train.shape[1:] == (16, 16, 3) and ds.y_train.shape[1:] == (16, 16)
    assert set(np.unique(np.concatenate([ds.y_train, ds.y_val]))) <= {0, 1, IGNORE}
    with pytest.raises(DataError, match=r"im2.png: mask is 20x30, its image im2.jpg is 40x30"):
        load_seg_folder(_folder(tmp_path / "a", mask_size=(20, 30)), (16, 16))
    root = _folder(tmp_path / "b", bad_id=7)
    (root / "classes.txt").write_text("sky\nground\n")
    with pytest.raises(DataError, match=r"im3.png: class id 7 is beyond the 2 classes"):
        load_seg_folder(root, (16, 16))
    with pytest.raises(DataError, match=r"im4.jpg: no mask for this image"):
        load_seg_folder(_folder(tmp_path / "c", drop=4), (16, 16))
    with pytest.raises(DataError, match="expected an image folder and a mask folder"):
        load_seg_folder(tmp_path, (16, 16))


def test_zoo_counts_equal_the_built_models():
    """The spec's count (trainable parameters) is the built Keras model's, for every zoo entry; the outputs
    are logits at the head's stride."""
    from odml.zoo.builder import trainable_params
    from odml.zoo.registry import create_model, resolve

    for name in ZOO:
        spec = resolve(name, input_size=128).config
        model = create_model(spec)
        assert trainable_params(model) == spec.params, name
        assert tuple(model.output_shape[1:]) == spec.output_shape


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Autoseg-EdgeTPU-XS at half width trained on shapes-seg at 64 px (the CLI's result and file)."""
    from typer.testing import CliRunner

    from odml.cli.app import app

    out = tmp_path_factory.mktemp("seg") / "seg.keras"
    r = CliRunner().invoke(app, ["train", "autoseg_edgetpu_xs", "--data", "shapes-seg:600", "--input-size", "64",
                                 "--width", "0.5", "--epochs", "15", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)["train"]


def test_train_on_shapes_seg_beats_the_background(trained):
    out, res = trained
    # a model that learned nothing from the image: the class frequencies everywhere (cross-entropy), the
    # background everywhere (mIoU: the background's IoU, its share of the pixels, over the classes present)
    assert res["val_loss"] < 0.8 * res["val_prior_loss"]
    ds = load_shapes_seg("shapes-seg:600", (64, 64))
    bg = float((ds.y_val == 0).mean())
    assert res["val_miou"] > 1.2 * bg / ds.num_classes
    assert out.is_file() and out.with_name("seg.odml.json").is_file()
    # the figures are found: figure-vs-background IoU of the saved model's maps, which predicting the background
    # everywhere has at 0
    from odml.train.segment import predict_maps
    from odml.zoo.load import load_model

    pred, _ = predict_maps(load_model(out).model, ds.x_val, (64, 64))
    fg, truth = pred > 0, ds.y_val > 0
    assert (fg & truth).sum() / (fg | truth).sum() > 0.2


def test_export_finalized_int8_and_bench_miou(cli, trained, tmp_path):
    """export --finalize resize64,argmax: the file outputs the label map (int32, 64x64), int8 judged by per-pixel
    label agreement and per-class IoU against the finalized float model; bench --data gives the mIoU training
    reported, from the logits file and from the finalized one."""
    from odml.flatbuffer import read_tflite

    out, res = trained
    exp = tmp_path / "exp"
    r = cli("export", out, "--data", "shapes-seg:200", "--quantize", "fp32,int8", "--finalize", "resize64,argmax",
            "--out", exp, "--json")
    assert r.exit_code == 0, r.stderr
    arts = {a["precision"]: a for a in r.json()["export"]["artifacts"]}
    p8 = arts["int8"]["parity"]
    assert p8["measure"] == "labels" and p8["agreement"] > 0.95 and p8["class_iou_mean"] > 0.5
    assert 0 <= p8["class_iou_min"] <= p8["class_iou_mean"] and p8["classes"] >= 2
    info = read_tflite(exp / "seg_int8.tflite")
    assert list(info.outputs[0].shape) == [1, 64, 64] and info.outputs[0].dtype == "int32"
    # TFLite metadata of a segmentation output: a grayscale map whose class ids the packed labels name
    from odml.data.shapes import CLASSES
    from odml.exporters.metadata import read_metadata

    md = read_metadata((exp / "seg_int8.tflite").read_bytes(), info.metadata)
    assert md["labels"] == ["background", *CLASSES] and md["output_content"] == ["image (grayscale)"]
    assert md["task"] == "segment"
    plain = tmp_path / "plain"
    assert cli("export", out, "--quantize", "fp32", "--out", plain).exit_code == 0
    r = cli("bench", plain / "seg_fp32.tflite", exp / "seg_fp32.tflite", exp / "seg_int8.tflite", "--data",
            "shapes-seg:600", "--runs", "5", "--min-secs", "0", "--json")
    assert r.exit_code == 0, r.stderr
    logits, final, int8 = (b["classification"] for b in r.json()["bench"])
    assert logits["miou"] == pytest.approx(res["val_miou"], abs=2e-3)  # the same split, the same resize
    assert final["miou"] == pytest.approx(logits["miou"], abs=2e-3)
    assert int8["miou"] > 0.8 * final["miou"] and logits["images"] == 120


def test_finalize_refusals(cli, tmp_path):
    for method, words in (("resize64", "must end in a label map"), ("argmax,resize64", "must end in a label map"),
                          ("resize64,argmax,argmax", "cannot take 'argmax'"), ("shrink2,argmax", "cannot take")):
        out = tmp_path / method.replace(",", "_")
        assert_one_line_error(cli("export", "autoseg_edgetpu_xs", "--input-size", "64", "--classes", "3",
                                  "--quantize", "fp32", "--finalize", method, "--out", out), "--finalize", words)
        assert not out.exists()
    assert_one_line_error(cli("export", "mobilenet_edgetpu_v2_tiny", "--input-size", "32", "--quantize", "fp32",
                              "--finalize", "resize64,argmax", "--out", tmp_path / "c"), "only segmentation models")


def test_train_refuses_bad_masks_in_one_line(cli, tmp_path):
    root = _folder(tmp_path, bad_id=9)
    (root / "classes.txt").write_text("sky\nground\n")
    out = tmp_path / "m.keras"
    assert_one_line_error(cli("train", "autoseg_edgetpu_xs", "--data", root, "--input-size", "32", "--out", out),
                          "im3.png", "class id 9")
    assert not out.exists()


@pytest.mark.fast
def test_a_segmentation_spec_file_is_read_beside_classifier_specs(tmp_path):
    """Both families read .json specs: each file goes to the family whose format it is; a broken classifier spec
    still gets the classifier's error."""
    from odml.zoo.registry import resolve

    spec = resolve("autoseg_edgetpu_xs", classes=5, input_size=96).config
    f = tmp_path / "seg.json"
    f.write_text(spec.to_json())
    c = resolve(str(f), input_size=64)
    assert c.family.name == "segmentation" and c.config.to_line() == spec.to_line()
    assert c.config.num_classes == 5 and c.config.input_shape == (64, 64, 3)
    cls = tmp_path / "cls.json"
    cls.write_text(resolve("mobilenet_edgetpu_v2_tiny").config.to_json())
    assert resolve(str(cls)).family.name == "ibn"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"line": "stem_k3_s2_c16 dw_k4_e1_s1_c16 head_c0"}))
    with pytest.raises(SpecError, match="kernel must be an odd"):
        resolve(str(bad))


@pytest.mark.fast
def test_scores_of_label_maps_at_another_size_and_a_broken_spec_file(tmp_path):
    from odml.zoo.registry import family_of, resolve

    fam = family_of("autoseg_edgetpu_xs")
    y = np.zeros((2, 8, 8), np.uint8)
    y[:, :4] = 1
    labels = np.zeros((2, 4, 4))
    labels[:, :2] = 1  # the same map at half the size
    s = fam.score(labels, y)
    assert s["miou"] == 1.0 and s["accuracy"] == 1.0
    logits = np.stack([1 - labels, labels], -1)  # scores at the half size: resized bilinearly, then argmax
    assert fam.score(logits, y)["accuracy"] > 0.8
    spec = json.loads(resolve("autoseg_edgetpu_xs").config.to_json())
    spec["head"]["repeatz"] = 3
    f = tmp_path / "typo.json"
    f.write_text(json.dumps(spec))
    with pytest.raises(SpecError, match="head: unknown key.*repeatz"):  # the segmentation family's own error
        resolve(str(f))


def test_training_pipeline_moves_image_and_mask_together():
    """Flips and scales keep each pixel's class under it: images whose every
    pixel holds its class id (x 20), large blocks so that bilinear blending
    touches few pixels; shrunk images are padded with ignored pixels."""
    from odml.data.segmentation import SegDataset

    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 5, (16, 4, 4))
    masks = np.kron(blocks, np.ones((16, 16), dtype=np.int64)).astype(np.uint8)  # 64x64 of 16x16 blocks
    masks[:, :, :8] = np.arange(8)[None, None, :] % 5  # a stripe that tells left from right
    images = np.repeat((masks * 20)[..., None], 3, -1).astype(np.uint8)
    ds = SegDataset(images, masks, images[:2], masks[:2], [str(i) for i in range(5)], "test", scale_range=(0.6, 1.4))
    agree, ignored, total = 0, 0, 0
    for _ in range(3):
        for x, y in ds.epoch_dataset(0, 8, 0):
            x, y = x.numpy(), y.numpy()
            assert x.shape == (len(y), 64, 64, 3) and y.shape == (len(y), 64, 64)
            valid = y != IGNORE
            agree += int((np.abs(x[..., 0] * 255 / 20 - y)[valid] < 0.5).sum())
            ignored += int((~valid).sum())
            total += int(valid.sum())
    assert agree / total > 0.9, agree / total
    assert ignored > 0  # some scales below 1 were drawn: padding marked ignored
    assert total > 0.5 * 3 * 16 * 64 * 64


def test_compress_distills_segmentation_students_per_pixel(cli, trained, tmp_path):
    """odml compress on a segmentation teacher: students of the teacher's own architecture, narrowed, distilled
    from its per-pixel distributions and trained on the masks; scored by pixel accuracy and mIoU, int8 included.
    A student that learned nothing would predict the background: the test asks clearly more than that."""
    out, res = trained
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 8\nbatch_size: 16\nlearning_rate: 0.01\n")
    r = cli("compress", out, "--data", "shapes-seg:600", "--sizes", "0.5", "--recipe", recipe, "--out",
            tmp_path / "run", "--runs", "5", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["compress"]
    t, (s,) = rep["teacher"], rep["students"]
    assert t["miou"] == pytest.approx(res["val_miou"], abs=2e-3)  # the teacher's fp32 file scored like the model
    assert t["on_train"]["examples"] > 1000  # soft labels measured per pixel
    ds = load_shapes_seg("shapes-seg:600", (64, 64))
    bg_only = float((ds.y_val == 0).mean()) / ds.num_classes
    assert s["label"].startswith("autoseg_edgetpu_xs_w") and s["params"] < 0.6 * t["params"]
    assert s["miou"] > 1.15 * bg_only and s["int8_miou"] > 0.9 * s["miou"]
    assert s["accuracy"] > float((ds.y_val == 0).mean())
    from odml.train.segment import predict_maps
    from odml.zoo.load import load_model

    card = load_model(tmp_path / "run" / s["tflite"]).card
    assert card.family.name == "segmentation" and card.output.measure == "pixels"
    # the figures are found (figure-vs-background IoU; the background everywhere has 0, the teacher about 0.23)
    pred, _ = predict_maps(load_model(tmp_path / "run" / f"{s['label']}.keras").model, ds.x_val, (64, 64))
    fg, truth = pred > 0, ds.y_val > 0
    assert (fg & truth).sum() / (fg | truth).sum() > 0.07


def test_compress_refuses_a_finalized_teacher(cli, trained, tmp_path):
    out, _ = trained
    assert cli("export", out, "--quantize", "fp32", "--finalize", "resize64,argmax", "--out", tmp_path / "f"
               ).exit_code == 0
    r = cli("compress", tmp_path / "f" / "seg_fp32.tflite", "--data", "shapes-seg:100", "--out", tmp_path / "run")
    assert_one_line_error(r, "finalized")
    assert not (tmp_path / "run").exists()


@pytest.mark.fast
def test_students_are_narrower_zoo_models_whose_groups_fit():
    """Segmentation students derived from a teacher are the teacher's
    architecture at a width: every filter count scaled, grouped blocks keeping
    the most groups that divide their narrower channels (DeepLab's
    MobileNetEdgeTPUV2 backbones have GC-IBN blocks), valid at any width and
    the teacher itself at width 1."""
    from odml.zoo.registry import get_family, resolve

    fam = get_family("segmentation")
    for name in fam.models():
        cfg = resolve(name).config
        assert fam.scale(cfg, 1.0).params == cfg.params
        prev = 0
        for w in (0.11, 0.23, 0.37, 0.5, 0.77):
            s = fam.scale(cfg, w)  # validates: a group count that does not divide would raise
            assert prev < s.params < cfg.params
            prev = s.params
