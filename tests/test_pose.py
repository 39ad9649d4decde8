"""BlazePose (issue 8): model structure and parameter counts, the ROI and
detector geometry, the COCO reader and the synthetic people, training and the
pipeline through the CLI, export to fp16 / int8 with builtin ops only, and
bad input."""

import json
import math

import numpy as np
import pytest

from helpers import assert_one_line_error

REFERENCE_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "PAD", "RESHAPE", "RESIZE_BILINEAR", "MAX_POOL_2D",
                 "LOGISTIC", "CONCATENATION"}
# our landmark models read x, y out by a soft-argmax (zoo/poseconfig.py): three more builtin ops
SOFT_ARGMAX_OPS = {"TRANSPOSE", "SOFTMAX", "FULLY_CONNECTED"}


def test_counts_match_the_keras_models_and_the_reference():
    from odml.zoo.blazepose import build_pose_model
    from odml.zoo.poseconfig import count, pose_config

    for name in ("blazepose_detector", "blazepose_lite", "blazepose_full", "blazepose_tiny"):
        cfg = pose_config(name)
        m = build_pose_model(cfg, name)
        c = count(cfg)
        assert m.deploy.count_params() == c["keras_params"], name  # batch norm: 4 per channel in Keras
        assert m.train.count_params() == c["keras_params_train"], name
        assert list(m.deploy.output_shape[1:]) == c["output"], name
    bn = pose_config("blazepose_tiny", batch_norm=True)  # batch norm in training, folded on export
    m, c = build_pose_model(bn, "blazepose_tiny"), count(bn)
    assert m.deploy.count_params() == c["keras_params"] > c["params"] == count(pose_config("blazepose_tiny"))["params"]
    assert count(pose_config("blazepose_detector"))["output"] == [2254, 13]
    assert count(pose_config("blazepose_full"))["output"] == [176]  # 35 x 5 + pose flag
    full = count(pose_config("blazepose_full"))["params"]
    assert abs(full - 3_169_489) / 3_169_489 < 0.05, full  # the released full model's weights
    assert count(pose_config("blazepose_lite"))["params"] < full / 2


def test_soft_argmax_reads_out_where_the_logits_peak():
    import numpy as np
    from odml.zoo.blazepose import SoftArgmax

    logits = np.zeros((2, 16, 16, 3), np.float32)
    logits[0, 3, 10, 0] = 50.0  # row 3, column 10: x = 10.5 / 16, y = 3.5 / 16
    logits[0, 15, 0, 1] = 50.0
    logits[0, 4, 4, 2] = logits[0, 4, 5, 2] = 50.0  # two equal peaks: halfway between
    xy = SoftArgmax()(logits).numpy()
    assert xy.shape == (2, 3, 2)
    np.testing.assert_allclose(xy[0], [[10.5 / 16, 3.5 / 16], [0.5 / 16, 15.5 / 16], [5.0 / 16, 4.5 / 16]], atol=1e-5)
    np.testing.assert_allclose(xy[1], 0.5, atol=1e-5)  # flat logits: the centre


def test_zoo_list_shows_the_pose_models(cli):
    from odml.zoo.poseconfig import count, pose_config

    r = cli("zoo", "list", "blazepose", "--json")
    assert r.exit_code == 0, r.stderr
    rows = {m["name"]: m for m in r.json()["models"]}
    released = {"blazepose_detector_released", "blazepose_full_released"}  # MediaPipe's, once imported
    assert set(rows) == {"blazepose_detector", "blazepose_lite", "blazepose_full"} | released
    for name in released:
        assert rows.pop(name)["task"] in ("pose_detection", "pose_landmarks")
    for name, row in rows.items():
        c = count(pose_config(name))
        assert (row["params"], row["macs"]) == (c["params"], c["macs"])
        assert row["macs"] > 0


def test_anchor_layout_matches_the_detector_outputs():
    from odml.data.pose_geometry import anchor_strides, anchors

    a, s = anchors(224), anchor_strides(224)
    assert a.shape == (2254, 2) and len(s) == 2254
    assert (s == 8).sum() == 28 * 28 * 2 and (s == 16).sum() == 14 * 14 * 2 and (s == 32).sum() == 7 * 7 * 6
    # row-major cells, anchors of a cell adjacent: the second anchor shares the first's centre
    assert np.allclose(a[0], [0.5 / 28, 0.5 / 28]) and np.allclose(a[1], a[0]) and np.allclose(a[2], [1.5 / 28, 0.5 / 28])


def test_roi_from_alignment_and_back():
    from odml.data.pose_geometry import crop_to_image, image_to_crop, roi_from_alignment

    # upright person: hips at (100, 120), full-body point 80 px above
    roi = roi_from_alignment(np.array([100.0, 120.0]), np.array([100.0, 40.0]))
    assert abs(roi.angle) < 1e-9 and math.isclose(roi.size, 2 * 80 * 1.25)
    c = image_to_crop(np.array([[100.0, 120.0], [100.0, 40.0]]), roi, 256)
    assert np.allclose(c[0], [128, 128]) and np.allclose(c[1], [128, 128 - 128 / 1.25])
    # lying person (full-body point to the right): rotated a quarter turn, the point still maps up
    roi = roi_from_alignment(np.array([100.0, 120.0]), np.array([180.0, 120.0]))
    assert math.isclose(abs(roi.angle), math.pi / 2)
    c = image_to_crop(np.array([[180.0, 120.0]]), roi, 256)
    assert np.allclose(c[0], [128, 128 - 128 / 1.25])
    pts = np.random.default_rng(0).uniform(0, 300, (20, 2))
    assert np.allclose(crop_to_image(image_to_crop(pts, roi, 256), roi, 256), pts)


def test_crop_puts_image_content_where_the_geometry_says():
    from odml.data.pose_geometry import Roi, crop_roi, image_to_crop

    img = np.zeros((120, 160, 3), np.uint8)
    img[40:44, 100:104] = 255  # a bright 4x4 square centred at (102, 42)
    roi = Roi(90.0, 60.0, 80.0, 0.6)
    crop = crop_roi(img, roi, 64)
    ys, xs = np.nonzero(crop[..., 0] > 100)
    expect = image_to_crop(np.array([[102.0, 42.0]]), roi, 64)[0]
    assert len(xs) and np.hypot(xs.mean() + 0.5 - expect[0], ys.mean() + 0.5 - expect[1]) < 1.0


def test_detector_targets_decode_back_and_weighted_nms_merges():
    from odml.data.pose_geometry import anchor_strides, anchors, decode, detector_targets, weighted_nms

    anc, st = anchors(224), anchor_strides(224)
    pts = np.array([[[0.4, 0.6], [0.4, 0.2], [0.42, 0.35], [0.42, 0.2]]], np.float32)
    box = np.array([[0.4, 0.45, 0.3, 0.6]], np.float32)
    labels, reg = detector_targets(pts, box, anc, st)
    assert 1 <= labels.sum() <= 100  # a few cells around the hips, at the strides that suit the size
    raw = np.concatenate([labels[:, None] * 0.9, reg], 1)
    dets = decode(raw, anc)
    assert len(dets) == 1  # every positive anchor says the same: one merged detection
    assert np.allclose(dets[0].keypoints, pts[0], atol=1e-5) and np.allclose(dets[0].box, box[0], atol=1e-5)
    # weighted NMS: overlapping boxes average by score, a distant one stays apart
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.52, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    kps = np.zeros((3, 4, 2))
    kps[1] += 1.0
    out = weighted_nms(np.array([0.9, 0.3, 0.8]), boxes, kps, 0.3)
    assert len(out) == 2 and out[0].score == 0.9
    assert np.allclose(out[0].box[0], (0.5 * 0.9 + 0.52 * 0.3) / 1.2) and np.allclose(out[0].keypoints, 0.25)


def test_synthetic_people_are_seeded_and_in_the_image():
    from odml.data.pose import SyntheticPeople, alignment_points, torso_size

    a = [SyntheticPeople(size=(128, 160), seed=3).sample() for _ in range(2)]
    assert np.array_equal(a[0].image, a[1].image) and np.array_equal(a[0].keypoints, a[1].keypoints)
    gen = SyntheticPeople(size=(128, 160), seed=4)
    ss = [gen.sample() for _ in range(10)]
    assert not np.array_equal(ss[0].image, ss[1].image)
    for s in ss:
        assert s.image.shape == (128, 160, 3) and s.keypoints.shape == (1, 33, 3)
        assert s.visible.mean() > 0.5  # most points in the frame
        assert torso_size(s.keypoints[0]) > 5
        al = alignment_points(s.keypoints[0])
        r = np.hypot(*(al[1] - al[0]))  # the circle holds every point
        assert np.hypot(*(s.keypoints[0, :, :2] - al[0]).T).max() <= r + 1e-3
    assert SyntheticPeople(size=(64, 64), seed=0, empty=1.0).sample().people == 0


def test_synthetic_people_have_coco_handedness_and_plausible_limbs():
    """A person facing the camera has their left on the image's right (as in
    COCO), and limbs bend the way joints do: legs seldom cross."""
    from odml.data.pose import random_pose_3d

    rng = np.random.default_rng(0)
    poses = [random_pose_3d(rng) for _ in range(200)]
    for P in poses:  # x to the right, z towards the camera
        assert P[0, 2] > P[[7, 8], 2].mean()  # the nose is nearer than the ears: facing the camera
        for left, right in ((2, 5), (7, 8), (11, 12), (23, 24)):  # eyes, ears, shoulders, hips
            assert P[left, 0] > P[right, 0]
    # hip abduction is limited: the left ankle stays on the left of the right one
    ankles_out = np.mean([P[27, 0] > P[28, 0] for P in poses])
    assert ankles_out > 0.9


def test_coco_reader_places_17_points_and_masks_the_rest(tmp_path):
    from odml.data.pose import COCO17, read_coco, write_coco

    path = write_coco(tmp_path / "d", 3, seed=1, size=(96, 96))
    full = read_coco(path)
    assert len(full) == 3
    s = full.sample(0)
    assert s.image.shape == (96, 96, 3) and s.keypoints.shape == (1, 33, 3)
    doc = json.loads(path.read_text())
    for a in doc["annotations"]:
        del a["keypoints33"]  # plain COCO: 17 points
    plain = tmp_path / "d" / "plain.json"
    plain.write_text(json.dumps(doc))
    c = read_coco(plain).sample(0)
    labelled = np.nonzero(c.mask[0])[0]
    assert set(labelled) <= set(COCO17) and len(labelled) >= 10
    assert np.allclose(c.keypoints[0, labelled, :2], s.keypoints[0, labelled, :2])
    assert c.mask[0, [1, 3, 4, 6, 9, 10, 17, 29]].sum() == 0


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d["annotations"][0].pop("image_id"), "missing field 'image_id'"),
    (lambda d: d["images"][0].pop("width"), "missing field 'width'"),
    (lambda d: d["annotations"][0].__setitem__("keypoints", [1, 2, 2]), "expected 51 numbers"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(0, 500.0), "outside its 96x96 image"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 77), "image_id 77 is not in 'images'"),
])
def test_bad_keypoint_json_is_one_line_exit_2(cli, tmp_path, edit, fragment):
    from odml.data.pose import write_coco

    path = write_coco(tmp_path / "d", 2, seed=1, size=(96, 96))
    doc = json.loads(path.read_text())
    for a in doc["annotations"]:
        del a["keypoints33"]
        a["keypoints"][2] = 2  # the nose labelled, so that moving it out of range is an error
        a["keypoints"][0], a["keypoints"][1] = 10.0, 10.0
    edit(doc)
    path.write_text(json.dumps(doc))
    out = tmp_path / "run"
    r = cli("train", "blazepose", "--data", path, "--out", out, "--variant", "tiny", "--steps", "1,1,1")
    assert_one_line_error(r, "person_keypoints.json", fragment)
    assert not out.exists()


def test_bad_media_is_one_line_exit_2(cli, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    r = cli("pose", tmp_path / "broken.png", "--model", tmp_path)
    assert_one_line_error(r, "broken.png", "cannot decode image")
    (tmp_path / "empty.mp4").write_bytes(b"")
    r = cli("pose", tmp_path / "empty.mp4", "--model", tmp_path)
    assert_one_line_error(r, "empty.mp4")
    r = cli("pose", tmp_path / "missing.jpg", "--model", tmp_path)
    assert_one_line_error(r, "missing.jpg", "not found")
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "ok.png")
    r = cli("pose", tmp_path / "ok.png", "--model", tmp_path / "nothing")
    assert_one_line_error(r, "nothing", "pose model folder not found")


def test_models_that_are_not_blazepose_stages_are_one_line(cli, tmp_path):
    """A classifier given as the detector or the landmark model (found by
    fuzzing: a reshape error deep in the pipeline, exit 1)."""
    from PIL import Image

    from odml._tf import keras as tf_keras
    from odml.zoo.poseconfig import LANDMARKS

    keras = tf_keras()  # what odml's pose training writes

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "ok.png")

    def model(size, outputs, name):
        x = keras.Input((size, size, 3))
        y = keras.layers.Dense(outputs)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x)))
        keras.Model(x, y).save(tmp_path / name)
        return tmp_path / name

    classifier = model(64, 3, "classifier.keras")
    landmarks = model(64, 5 * LANDMARKS + 1, "landmarks.keras")
    r = cli("pose", tmp_path / "ok.png", "--detector", classifier, "--landmarks", landmarks)
    assert_one_line_error(r, "classifier.keras", "answers [3]", "BlazePose detector")
    from odml.data.pose_geometry import anchors

    detector = model(64, 13 * len(anchors(64)), "detector.keras")
    r = cli("pose", tmp_path / "ok.png", "--detector", detector, "--landmarks", classifier)
    assert_one_line_error(r, "classifier.keras", "answers [3]", "BlazePose landmark model")
    small = model(8, 3, "small.keras")
    r = cli("pose", tmp_path / "ok.png", "--detector", small, "--landmarks", landmarks)
    assert_one_line_error(r, "small.keras", "[None, 8, 8, 3]", "S at least 16")
    r = cli("pose", tmp_path / "ok.png", "--detector", detector, "--landmarks", landmarks, "--json")
    assert r.exit_code == 0, r.stderr  # the right shapes (untrained): the pipeline runs
    # a landmark model whose weights are broken (NaN): one line, and no keypoints file with NaN in it
    # (found by fuzzing the pose models: strict JSON readers refuse NaN)
    m = keras.models.load_model(landmarks)
    m.set_weights([np.full_like(w, np.nan) for w in m.get_weights()])
    m.save(tmp_path / "nan.keras")
    r = cli("pose", tmp_path / "ok.png", "--detector", detector, "--landmarks", tmp_path / "nan.keras",
            "--min-detection", "-inf", "--keypoints", tmp_path / "k.json", "--out", tmp_path / "drawn.png")
    assert_one_line_error(r, "nan.keras", "NaN or infinite values")
    assert not (tmp_path / "k.json").exists() and not (tmp_path / "drawn.png").exists()


def test_a_video_with_no_frames_is_exit_2(cli, tmp_path):
    import imageio.v3 as iio

    from odml.pose.pipeline import read_frames

    iio.imwrite(tmp_path / "two.gif", np.stack([np.full((16, 16, 3), v, np.uint8) for v in (0, 200)]), duration=100)
    assert len(list(read_frames(tmp_path / "two.gif"))) == 2
    (tmp_path / "zero.gif").write_bytes(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")  # header and trailer, no frame
    r = cli("pose", tmp_path / "zero.gif", "--model", tmp_path, "--out", tmp_path / "out.gif")
    assert_one_line_error(r, "zero.gif")
    assert not (tmp_path / "out.gif").exists()


def test_tracking_carries_the_roi_from_frame_to_frame(tmp_path):
    """The pipeline's bookkeeping with oracle models: the detector runs on the
    first frame only, later ROIs come from the landmarks' alignment points, and
    keypoints come back in image pixels."""
    from odml.data.pose import alignment_points, moving_person
    from odml.data.pose_geometry import image_to_crop, roi_from_alignment
    from odml.pose.pipeline import PoseTracker
    from odml.zoo.blazepose import build_pose_model
    from odml.zoo.poseconfig import pose_config

    truth: list = []
    frames = moving_person(6, (160, 200), seed=2, truth=truth)
    tr = PoseTracker(build_pose_model(pose_config("blazepose_detector_tiny"), "blazepose_detector").deploy,
                     build_pose_model(pose_config("blazepose_tiny"), "blazepose_tiny").deploy)
    state = {"frame": 0, "detects": 0}

    def detect(image):
        state["detects"] += 1
        a = alignment_points(truth[state["frame"]])
        return roi_from_alignment(a[0], a[1])

    def landmarks(x):  # what a perfect landmark model would output for the current ROI (its one output)
        kp = truth[state["frame"]]
        pts = np.concatenate([kp[:, :2], alignment_points(kp)[:2]])
        uv = image_to_crop(pts, tr.roi, 256) / 256
        out = np.zeros((35, 5))
        out[:, :2], out[:, 3:] = uv, 1.0
        return [np.concatenate([out.ravel(), [0.99]])]

    tr.detect, tr.lm = detect, landmarks
    tr.lm.size = 256
    for i, f in enumerate(frames):
        state["frame"] = i
        r = tr.process(f)
        assert r is not None and r.detected == (i == 0)
        assert np.abs(r.keypoints[:, :2] - truth[i][:, :2]).max() < 1e-3 * 200
    assert state["detects"] == 1


def test_train_pose_then_run_the_pipeline_and_export(cli, tmp_path):
    """A tiny BlazePose trained for a few steps through the CLI: the folder,
    pose.json with PCK, `odml pose` on an image and a video, resuming a
    finished run, and int8 / fp16 export with the reference op set."""
    out = tmp_path / "pose"
    r = cli("train", "blazepose", "--variant", "tiny", "--steps", "8,8,8", "--batch-size", "4", "--out", out,
            "--val-images", "12", "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["train"]
    assert (out / "detector.keras").is_file() and (out / "landmarks.keras").is_file()
    for key in ("pck@0.2", "pck@0.2_coco17", "pck@0.2_heatmap"):
        assert 0.0 <= res["landmarks"][key] <= 1.0
    assert json.loads((out / "pose.json").read_text())["landmarks"]["params"] == res["landmarks"]["params"]
    # a finished run resumes to the same models without training again
    r2 = cli("train", "blazepose", "--variant", "tiny", "--steps", "8,8,8", "--batch-size", "4", "--out", out,
             "--val-images", "12", "--json")
    assert r2.exit_code == 0 and r2.json()["train"]["stages"] == {}
    r3 = cli("train", "blazepose", "--variant", "tiny", "--steps", "9,8,8", "--out", out, "--val-images", "12")
    assert_one_line_error(r3, "other settings")

    from PIL import Image

    from odml.data.pose import SyntheticPeople, moving_person

    Image.fromarray(SyntheticPeople(size=(180, 240), seed=5).sample().image).save(tmp_path / "person.png")
    r = cli("pose", tmp_path / "person.png", "--model", out, "--out", tmp_path / "annotated.png", "--json",
            "--min-detection", "0.0", "--min-pose", "0.0")
    assert r.exit_code == 0, r.stderr
    p = r.json()["pose"]
    assert p["frames"] == 1 and p["results"][0]["person"]  # thresholds at 0: always a person
    assert len(p["results"][0]["keypoints"]) == 33
    assert Image.open(tmp_path / "annotated.png").size == (240, 180)
    # "no person found" is a result: thresholds no score reaches
    r = cli("pose", tmp_path / "person.png", "--model", out, "--out", tmp_path / "none.png", "--min-detection", "1.01")
    assert r.exit_code == 0 and "no person found" in r.stdout
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "walk.gif", np.stack(moving_person(4, (96, 128), seed=1)), duration=100)
    r = cli("pose", tmp_path / "walk.gif", "--model", out, "--out", tmp_path / "walk_annotated.gif", "--json",
            "--min-detection", "0.0", "--min-pose", "0.0")
    assert r.exit_code == 0, r.stderr
    v = r.json()["pose"]
    assert v["frames"] == 4 and v["detector_runs"] == 1  # tracked after the first frame
    assert len(list(iio.imiter(tmp_path / "walk_annotated.gif"))) == 4

    exp = tmp_path / "export"
    r = cli("export", out / "landmarks.keras", "--quantize", "fp16,int8", "--data", "synthetic",
            "--calibration-samples", "16", "--parity-samples", "8", "--out", exp, "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["task"] == "pose_landmarks"
    for a in rep["artifacts"]:
        assert set(a["ops"]) - {"QUANTIZE", "DEQUANTIZE"} <= REFERENCE_OPS | SOFT_ARGMAX_OPS, a["ops"]
        assert "top1_agreement" not in a["parity"]
    # the exported files run in the pipeline too
    r = cli("pose", tmp_path / "person.png", "--detector", out / "detector.keras", "--landmarks",
            exp / "landmarks_int8.tflite", "--json", "--min-detection", "0.0", "--min-pose", "0.0")
    assert r.exit_code == 0, r.stderr
    assert r.json()["pose"]["results"][0]["person"]


def test_a_newcomer_without_models_is_told_to_import_mediapipe_first(cli_proc, tmp_path):
    """`odml pose photo.png` before anything was imported or trained: the
    README's first step is named, not a folder the user never made."""
    from PIL import Image

    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "photo.png")
    r = cli_proc("pose", tmp_path / "photo.png", "--out", tmp_path / "a.png",
                 env={"ODML_HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert_one_line_error(r, "odml zoo import-mediapipe", "odml train blazepose")
    assert not (tmp_path / "a.png").exists()
