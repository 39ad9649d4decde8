"""MediaPipe's released BlazePose models (issue 23) and selfie segmentation
(issue 41) imported into odml:
`odml zoo import-mediapipe` from the real mediapipe wheel (downloaded with pip
unless ODML_TEST_MEDIAPIPE_WHEEL names one), the rebuilt Keras models against
the released files under the real LiteRT interpreter, `odml pose` on real
photographs (scikit-image's astronaut and cameraman) and on a video made of
real frames, and the bad inputs of the import."""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import assert_one_line_error, check_page, need

MEMBERS = ("mediapipe/modules/pose_detection/pose_detection.tflite",
           "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
           "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite")

# hand-placed on astronaut.png (512x512, scikit-image), image pixels: the
# person's left is the image's right
ASTRONAUT = {0: (223, 127), 2: (248, 103), 5: (200, 101), 9: (241, 143), 10: (206, 143)}
ASTRONAUT_SHOULDERS = {11: (318, 238), 12: (112, 225)}


def _photo(name):
    import skimage.data

    im = getattr(skimage.data, name)()
    return np.stack([im] * 3, -1) if im.ndim == 2 else im[..., :3]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The released mediapipe wheel: ODML_TEST_MEDIAPIPE_WHEEL, or downloaded with pip; without either the
    tests that need it skip saying why (and fail under CI)."""
    from odml.errors import DataError
    from odml.zoo.mediapipe import MEDIAPIPE_VERSION, WHEEL_PLATFORM, download_wheel

    how = (f"pip download mediapipe=={MEDIAPIPE_VERSION} --no-deps --only-binary=:all: --python-version 3.11 "
           f"--platform {WHEEL_PLATFORM} -d DIR, then set ODML_TEST_MEDIAPIPE_WHEEL to the .whl")
    given = os.environ.get("ODML_TEST_MEDIAPIPE_WHEEL")
    if given:
        need(Path(given).is_file(), f"ODML_TEST_MEDIAPIPE_WHEEL={given}: no such file ({how})")
        return Path(given)
    try:
        return download_wheel(MEDIAPIPE_VERSION, tmp_path_factory.mktemp("wheel"))
    except DataError as e:
        need(False, f"the mediapipe {MEDIAPIPE_VERSION} wheel could not be downloaded ({e}); offline: {how}")


@pytest.fixture(scope="module")
def released(wheel, tmp_path_factory):
    """The import, as a user runs it (a separate process, its own ODML_HOME)."""
    home = tmp_path_factory.mktemp("home")
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", "zoo", "import-mediapipe", "--wheel",
           str(wheel), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "ODML_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["import"]
    folder = Path(m["folder"])
    assert folder == home / "mediapipe_pose"
    return {"home": home, "folder": folder, "manifest": m}


def test_import_writes_keras_models_and_released_files(wheel, released):
    f, m = released["folder"], released["manifest"]
    assert sorted(p.name for p in f.iterdir()) == ["detector.keras", "detector.odml.json", "detector.tflite",
                                                   "landmarks.keras", "landmarks.odml.json", "landmarks.tflite",
                                                   "manifest.json", "selfie.keras", "selfie.odml.json",
                                                   "selfie.tflite"]
    card = json.loads((f / "landmarks.odml.json").read_text())
    assert card["family"] == "blazepose_full_released" and card["input"]["name"] == "input_1"
    assert [t["name"] for t in card["output"]["tensors"]] == ["Identity", "Identity_1", "Identity_2", "Identity_3",
                                                               "Identity_4"]
    assert m["models"]["landmarks"]["params"] == 3_169_489  # the released full landmark model's weight count
    assert m["models"]["detector"]["folded"] == {"DEQUANTIZE": 144, "DENSIFY": 38}  # sparse fp16 weights decoded
    with zipfile.ZipFile(wheel) as z:
        for part, member in zip(("detector", "landmarks", "selfie"), MEMBERS):
            assert (f / f"{part}.tflite").read_bytes() == z.read(member)  # the released file as it was


def test_keras_models_agree_with_released_files_on_people(released):
    """Parity (issue 23, step 2) on synthetic people and on real photographs:
    keypoints within 0.5% of the crop, scores within 1e-3, detector boxes
    within 1 px at 224."""
    from odml.data.pose import SyntheticPeople
    from odml.data.pose_geometry import letterbox
    from odml.pose.pipeline import PoseTracker
    from odml.zoo.load import load_keras_model
    from odml.zoo.mediapipe import LIMITS, parity

    f = released["folder"]
    photos = [_photo("astronaut"), _photo("camera")]
    people = SyntheticPeople((256, 256), seed=3)
    synth = [people.sample().image for _ in range(2)]
    det_in = np.stack([letterbox(im, 224)[0] / 127.5 - 1.0 for im in photos + synth])
    fig = parity(load_keras_model(f / "detector.keras"), f / "detector.tflite", "detector", det_in)
    assert fig["box_px"] <= LIMITS["box_px"] and fig["score"] <= LIMITS["score"], fig
    # landmark inputs: the crops the pipeline makes of the astronaut, and synthetic people
    tracker = PoseTracker.released(f)
    roi = tracker.detect(photos[0])
    assert roi is not None
    from odml.data.pose_geometry import crop_roi

    lm_in = np.stack([crop_roi(photos[0], roi, 256) / 255.0] + [s / 255.0 for s in synth])
    fig = parity(load_keras_model(f / "landmarks.keras"), f / "landmarks.tflite", "landmarks", lm_in)
    assert fig["keypoint_pct"] <= LIMITS["keypoint_pct"] and fig["score"] <= LIMITS["score"], fig


def test_pose_on_a_real_photo_finds_the_person(released, cli_proc, tmp_path):
    """`odml pose` uses the imported models by default: on the astronaut the
    face points and shoulders lie where a person placed them by hand."""
    from PIL import Image

    img = tmp_path / "astronaut.png"
    Image.fromarray(_photo("astronaut")).save(img)
    env = {"ODML_HOME": str(released["home"])}
    r = cli_proc("pose", img, "--keypoints", tmp_path / "k.json", "--out", tmp_path / "drawn.png", env=env)
    assert r.exit_code == 0, r.stderr
    assert "person found" in r.stdout
    res = json.loads((tmp_path / "k.json").read_text())["results"][0]
    kp = {i: (k["x"], k["y"]) for i, k in enumerate(res["keypoints"])}
    for i, ref in ASTRONAUT.items():
        assert np.hypot(*np.subtract(kp[i], ref)) < 12, (i, kp[i], ref)
    for i, ref in ASTRONAUT_SHOULDERS.items():
        assert np.hypot(*np.subtract(kp[i], ref)) < 40, (i, kp[i], ref)
    assert Image.open(tmp_path / "drawn.png").size == (512, 512)
    # the released .tflite files run the same pipeline (--prefer tflite) to the same points
    r2 = cli_proc("pose", img, "--model", "mediapipe", "--prefer", "tflite", "--keypoints", tmp_path / "t.json",
                  env=env)
    assert r2.exit_code == 0, r2.stderr
    res2 = json.loads((tmp_path / "t.json").read_text())["results"][0]
    d = [np.hypot(a["x"] - b["x"], a["y"] - b["y"]) for a, b in zip(res["keypoints"], res2["keypoints"])]
    assert max(d) < 0.005 * res["roi"]["size"], max(d)


def test_pose_tracks_a_video_of_real_frames(released, tmp_path):
    """A video panned across the astronaut photo: the detector runs on the
    first frame, the ROI is tracked after, and the face stays where it is."""
    from odml.pose.pipeline import PoseTracker

    photo = _photo("astronaut")
    tracker = PoseTracker.released(released["folder"])
    detected = 0
    for dx in range(0, 60, 6):  # the camera pans right: the person moves left by dx
        frame = np.ascontiguousarray(photo[:, dx:dx + 440])
        r = tracker.process(frame)
        assert r is not None, dx
        detected += r.detected
        for i, (x, y) in ASTRONAUT.items():
            assert np.hypot(r.keypoints[i, 0] - (x - dx), r.keypoints[i, 1] - y) < 20, (dx, i)  # 4% of the frame
    assert detected == 1


def test_cameraman_found_at_a_lower_detection_threshold(released, cli_proc, tmp_path):
    """The released detector scores the cameraman (a grey photo, bent over a
    camera) 0.43: no person at MediaPipe's default 0.5, found at 0.4 with the
    head in the upper left quarter."""
    from PIL import Image

    img = tmp_path / "camera.png"
    Image.fromarray(_photo("camera")).save(img)
    env = {"ODML_HOME": str(released["home"])}
    r = cli_proc("pose", img, "--json", env=env)
    assert r.exit_code == 0 and r.json()["pose"]["frames_with_person"] == 0
    r = cli_proc("pose", img, "--json", "--min-detection", "0.4", env=env)
    res = r.json()["pose"]["results"][0]
    nose = res["keypoints"][0]
    assert res["score"] > 0.5 and 150 < nose["x"] < 300 and 80 < nose["y"] < 200, nose


# ---- drop-in exports (step 4) and compression with the released teacher (step 5) ----------------------------

def _io(path):
    from odml.litert import load_interpreter

    it = load_interpreter(str(path))
    d = lambda ts: [(t["name"], t["shape"].tolist(), np.dtype(t["dtype"]).name) for t in ts]  # noqa: E731
    return d(it.get_input_details()), d(it.get_output_details())


def _crops(released):
    from odml.data.pose_geometry import crop_roi
    from odml.pose.pipeline import PoseTracker

    tracker = PoseTracker.released(released["folder"], min_detection=0.4)
    out = []
    for name in ("astronaut", "camera"):
        im = _photo(name)
        out.append(crop_roi(im, tracker.detect(im), 256) / 255.0)
    return np.stack(out).astype(np.float32)


def test_exports_keep_the_released_tensors_and_drop_in(released, cli, monkeypatch, tmp_path):
    """`odml export` of the imported models: the fp16 and int8 files take and
    give the released files' tensors (names, shapes, dtypes, order); the fp16
    landmark file computes what the released file computes on real crops; the
    pose pipeline runs on odml's files in place of the released ones to the
    same keypoints."""
    from odml.litert import load_interpreter, run_outputs
    from odml.pose.pipeline import PoseTracker

    monkeypatch.setenv("ODML_HOME", str(released["home"]))
    f = released["folder"]
    r = cli("export", "blazepose_detector_released", "--quantize", "fp16,int8", "--data", "synthetic",
            "--calibration-samples", "8", "--parity-samples", "4", "--out", tmp_path / "det", "--json")
    assert r.exit_code == 0, r.stderr
    r = cli("export", "blazepose_full_released", "--quantize", "fp16", "--data", "synthetic", "--parity-samples", "4",
            "--out", tmp_path / "lm", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert sorted(rep["artifacts"][0]["parity"]["outputs"]) == ["Identity", "Identity_1", "Identity_2", "Identity_3",
                                                                "Identity_4"]
    det16 = tmp_path / "det" / "blazepose_detector_released_fp16.tflite"
    lm16 = tmp_path / "lm" / "blazepose_full_released_fp16.tflite"
    assert _io(det16) == _io(f / "detector.tflite")
    assert _io(tmp_path / "det" / "blazepose_detector_released_int8.tflite") == _io(f / "detector.tflite")
    assert _io(lm16) == _io(f / "landmarks.tflite")
    assert _io(f / "landmarks.tflite")[1][0] == ("Identity", [1, 195], "float32")
    x = _crops(released)
    ref, got = run_outputs(load_interpreter(str(f / "landmarks.tflite")), x), run_outputs(load_interpreter(str(lm16)), x)
    for a, b in zip(ref, got):
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(a).max())
    img = _photo("astronaut")
    want = PoseTracker.released(f, prefer="tflite").process(img)
    mine = PoseTracker(str(det16), str(lm16)).process(img)
    assert np.abs(mine.keypoints[:, :2] - want.keypoints[:, :2]).max() < 0.5


def test_compress_distils_the_released_model_into_a_lite_student(released, cli, monkeypatch, tmp_path):
    """`odml compress` with the released full model as the teacher and odml's
    lite landmark model as the student, on synthetic people (a few steps):
    PCK against the teacher, fp16 and int8 files that run, size and latency;
    rerun: resumed, nothing trained again."""
    monkeypatch.setenv("ODML_HOME", str(released["home"]))
    out = tmp_path / "kp"
    args = ("compress", "blazepose_full_released", "--students", "blazepose_lite", "--steps", "3,3", "--runs", "3",
            "--calibration-samples", "8", "--out", out)
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["compress"]
    assert rep["kind"] == "keypoints" and rep["teacher"]["precision"] == "fp16"
    (s,) = rep["students"]
    assert s["label"] == "blazepose_lite" and s["params"] < released["manifest"]["models"]["landmarks"]["params"] / 2
    for k in ("pck@0.2_vs_teacher", "int8_pck@0.2_vs_teacher", "fp16_pck@0.2_vs_teacher", "pck@0.2_vs_truth"):
        assert 0.0 <= s[k] <= 1.0, k
    assert s["teacher_pck@0.2_vs_truth"] > 0.8  # the released model finds synthetic people's points
    assert s["int8_size_bytes"] < s["fp16_size_bytes"] < rep["teacher"]["size_bytes"]
    assert s["int8_latency_ms"] > 0 and s["speedup"] > 1
    for name in ("blazepose_lite.keras", "blazepose_lite_int8.tflite", "blazepose_lite_fp16.tflite", "report.json"):
        assert (out / name).is_file(), name
    card = json.loads((out / "blazepose_lite.odml.json").read_text())
    assert card["family"] == "blazepose_landmarks"
    from odml.report.page import num  # the page ranks the students by PCK against the teacher

    check_page(out, "PCK@0.2 vs the teacher", "blazepose_lite", num(s["int8_pck@0.2_vs_teacher"]))
    before = (out / "results.jsonl").read_text()
    r = cli(*args, "--json")
    assert r.exit_code == 0 and (out / "results.jsonl").read_text() == before


def test_compress_with_the_released_teacher_on_a_coco_style_file(released, cli, monkeypatch, tmp_path):
    """A user's COCO-style keypoint file as --data: its keypoints place the
    crops, the teacher labels them; PCK against the teacher on its held-out
    images."""
    from odml.data.pose import write_coco

    monkeypatch.setenv("ODML_HOME", str(released["home"]))
    ann = write_coco(tmp_path / "people", 12, seed=5)
    r = cli("compress", "blazepose_full_released", "--students", "blazepose_lite", "--data", ann, "--steps", "2,2",
            "--runs", "3", "--calibration-samples", "4", "--out", tmp_path / "kp", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["compress"]
    (s,) = rep["students"]
    assert rep["data"]["source"] == str(ann) and s["people"] >= 1 and 0.0 <= s["pck@0.2_vs_teacher"] <= 1.0


@pytest.mark.parametrize("extra, words", [
    (("--students", "blazepose_lite@0.5"), ("blazepose_lite@0.5", "not scaled by a width")),
    (("--students", "mobilenet_edgetpu_v2_tiny"), ("blazepose_landmarks students",)),
    (("--sizes", "0.5"), ("students", "name them")),
    (("--students", "blazepose_lite", "--prune", "0.5"), ("prune", "not pruned")),
    (("--students", "blazepose_lite", "--data", "digits"), ("--data digits", "synthetic")),
    (("--students", "blazepose_lite", "--steps", "5"), ("--steps '5'", "heatmap and regression")),
    (("--students", "blazepose_lite", "--pick", "latency_ms<=5"), ("--pick", "classifier")),
    # the classifier pipeline's options: refused, not ignored
    (("--students", "blazepose_lite", "--epochs", "2"), ("--epochs", "--steps", "not epochs")),
    (("--students", "blazepose_lite", "--sizes", "0.5"), ("--sizes", "not derived by size")),
    (("--students", "blazepose_lite", "--init", "teacher"), ("distill.init", "use random")),
    (("--students", "blazepose_lite", "--augment", "mixup"), ("distill.augment", "use none")),
])
def test_compress_with_a_keypoint_teacher_refuses_bad_settings(released, cli, monkeypatch, tmp_path, extra, words):
    monkeypatch.setenv("ODML_HOME", str(released["home"]))
    r = cli("compress", "blazepose_full_released", *extra, "--out", tmp_path / "never")
    assert_one_line_error(r, *words)
    assert not (tmp_path / "never").exists()


def test_compress_with_the_released_teacher_not_imported(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("ODML_HOME", str(tmp_path / "empty"))
    r = cli("compress", "blazepose_full_released", "--students", "blazepose_lite", "--out", tmp_path / "never")
    assert_one_line_error(r, "not imported", "odml zoo import-mediapipe")


# ---- selfie segmentation (issue 41) -----------------------------------------------------------------

def _people_photos(n=4):
    """Crops of scikit-image's photographs of people (the astronaut, the
    cameraman) at 256x256, pixel / 255."""
    from skimage.transform import resize

    out = []
    for name, (y0, y1, x0, x1) in (("astronaut", (0, 512, 0, 512)), ("camera", (0, 512, 0, 512)),
                                   ("astronaut", (0, 400, 40, 440)), ("camera", (20, 400, 60, 440)))[:n]:
        out.append(resize(_photo(name)[y0:y1, x0:x1] / 255.0, (256, 256), anti_aliasing=True))
    return np.stack(out).astype(np.float32)


def test_selfie_keras_model_agrees_with_the_released_file_on_people(released):
    """The rebuilt selfie model (MediaPipe's custom transposed convolution
    included) computes the released file's person probabilities on real
    photographs, and finds the astronaut: most of the pixels where she is."""
    from odml.litert import load_interpreter, run_outputs
    from odml.zoo.load import load_keras_model
    from odml.zoo.mediapipe import LIMITS, parity

    f = released["folder"]
    x = _people_photos()
    fig = parity(load_keras_model(f / "selfie.keras"), f / "selfie.tflite", "selfie", x)
    assert fig["probability"] <= LIMITS["probability"] and fig["pixels_differ"] <= LIMITS["pixels_differ"], fig
    p = run_outputs(load_interpreter(str(f / "selfie.tflite")), x)[0][..., 0]
    # the astronaut fills the middle of her photograph, the sky is above her right shoulder (image's left)
    assert p[0, 100:220, 100:160].mean() > 0.8 and p[0, :30, :30].mean() < 0.2
    card = json.loads((f / "selfie.odml.json").read_text())
    assert card["family"] == "selfie_segmentation_released" and card["output"]["name"] == "activation_10"


def test_selfie_exports_drop_in(released, cli, monkeypatch, tmp_path):
    """fp16 and int8 exports keep the released tensors; fp16 computes what
    the released file computes on photographs; int8's parity is judged per
    pixel with the person's IoU against the float model."""
    from odml.litert import load_interpreter, run_outputs

    monkeypatch.setenv("ODML_HOME", str(released["home"]))
    f = released["folder"]
    r = cli("export", "selfie_segmentation_released", "--quantize", "fp16,int8", "--data", "synthetic:40",
            "--parity-samples", "8", "--out", tmp_path / "sf", "--json")
    assert r.exit_code == 0, r.stderr
    arts = {a["precision"]: a for a in r.json()["export"]["artifacts"]}
    p8 = arts["int8"]["parity"]["outputs"]["activation_10"]
    assert p8["measure"] == "pixels" and p8["classes"] == 2 and p8["class_iou_min"] > 0.5 and p8["agreement"] > 0.9
    for prec in ("fp16", "int8"):
        assert _io(tmp_path / "sf" / f"selfie_segmentation_released_{prec}.tflite") == _io(f / "selfie.tflite")
    x = _people_photos()
    ref = run_outputs(load_interpreter(str(f / "selfie.tflite")), x)[0]
    got = run_outputs(load_interpreter(str(tmp_path / "sf" / "selfie_segmentation_released_fp16.tflite")), x)[0]
    assert np.abs(ref - got).max() < 1e-2 and ((ref > 0.5) == (got > 0.5)).mean() > 0.999


def test_compress_distils_the_selfie_model_into_a_segmentation_student(released, cli, monkeypatch, tmp_path):
    """`odml compress` with the released selfie model as the teacher on
    synthetic people (images alone: the teacher's maps are the masks): an
    Autoseg-EdgeTPU student at half width learns to find the people the
    teacher finds (a student that learned nothing says background
    everywhere: person IoU 0), in float and int8. Twelve epochs (240
    steps): at six, person IoU ranged from 0.04 to 0.34 over seeds, rates
    and temperatures (0.10 on the CI machine at seed 0), the student still
    finding its way out of saying background everywhere; at twelve it was
    0.35 to 0.37 over three seeds. 32 calibration images (of 200 by
    default: 5 s less) are enough for int8 to keep the person."""
    monkeypatch.setenv("ODML_HOME", str(released["home"]))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 12\nbatch_size: 8\nlearning_rate: 0.01\n")
    r = cli("compress", "selfie_segmentation_released", "--data", "synthetic:200", "--students",
            "autoseg_edgetpu_xs@0.5", "--recipe", recipe, "--runs", "3", "--calibration-samples", "32",
            "--out", tmp_path / "c", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["compress"]
    t, (s,) = rep["teacher"], rep["students"]
    assert t["miou"] == pytest.approx(1.0) and t["on_train"]["examples"] > 1000  # scored against its own maps
    assert any("no masks" in n and "released selfie model" in n for n in rep["notes"])
    assert s["iou"][1] > 0.15 and s["int8_iou"][1] > 0.15, (s["iou"], s["int8_iou"])
    card = json.loads((tmp_path / "c" / f"{s['label']}.odml.json").read_text())
    assert card["family"] == "segmentation" and card["labels"] == ["background", "person"]
    from odml.report.page import num  # the page ranks the students by mIoU

    check_page(tmp_path / "c", "mIoU", s["label"], num(s["int8_miou"]), num(t["miou"]))


# ---- bad input --------------------------------------------------------------------------------------

def _fake_wheel(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def test_wheel_without_the_models_is_refused(cli_proc, tmp_path):
    w = _fake_wheel(tmp_path / "mediapipe-9.9-py3-none-any.whl", {"mediapipe/__init__.py": b""})
    r = cli_proc("zoo", "import-mediapipe", "--wheel", w, env={"ODML_HOME": str(tmp_path / "home")})
    assert_one_line_error(r, "no mediapipe/modules/pose_detection/pose_detection.tflite", "0.10.21")
    assert not (tmp_path / "home" / "mediapipe_pose").exists()
    assert not [p for p in (tmp_path / "home").iterdir() if p.name.startswith(".")]
    r = cli_proc("zoo", "import-mediapipe", "--wheel", tmp_path / "absent.whl", env={"ODML_HOME": str(tmp_path / "h2")})
    assert_one_line_error(r, "absent.whl", "not found")


def test_wheel_whose_graph_differs_names_the_first_op(wheel, cli_proc, tmp_path):
    """A wheel whose detector file is another graph (the landmark model put in
    its place): one line naming the op where the graphs part."""
    with zipfile.ZipFile(wheel) as z:
        lm = z.read(MEMBERS[1])
        selfie = z.read(MEMBERS[2])
    w = _fake_wheel(tmp_path / "mediapipe-0.10.21-swapped.whl", {MEMBERS[0]: lm, MEMBERS[1]: lm, MEMBERS[2]: selfie})
    r = cli_proc("zoo", "import-mediapipe", "--wheel", w, env={"ODML_HOME": str(tmp_path / "home")})
    assert_one_line_error(r, "swapped.whl:mediapipe/modules/pose_detection/pose_detection.tflite",
                          "not MediaPipe's pose detector", "op 5", "is DEPTHWISE_CONV_2D, expected PAD")
    assert not (tmp_path / "home" / "mediapipe_pose").exists()


def test_import_killed_midway_leaves_nothing_half_written(wheel, released, tmp_path):
    """kill -9 during the import: the previous import stays whole (or none is
    there), and the next import clears what the killed one staged."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(released["folder"], home / "mediapipe_pose")
    before = (home / "mediapipe_pose" / "manifest.json").read_bytes()
    cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", "zoo", "import-mediapipe", "--wheel",
           str(wheel)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "ODML_HOME": str(home)})
    deadline = time.time() + 120
    staged = []
    while time.time() < deadline and not staged:
        staged = [p for p in home.glob(".mediapipe_pose.import-*") if (p / "detector.tflite").exists()]
        time.sleep(0.05)
        assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (home / "mediapipe_pose" / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in (home / "mediapipe_pose").iterdir()) == sorted(
        p.name for p in released["folder"].iterdir())
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "ODML_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    assert [p.name for p in home.iterdir()] == ["mediapipe_pose"]


def test_pose_with_released_models_not_imported(cli_proc, tmp_path):
    from PIL import Image

    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    r = cli_proc("pose", img, "--model", "mediapipe", env={"ODML_HOME": str(tmp_path / "empty")})
    assert_one_line_error(r, "not imported", "odml zoo import-mediapipe")


def test_densify_csr_against_dense():
    """TFLite's sparsity format (dense rows, CSR last dimension) decoded back
    to the dense tensor; inconsistent metadata is refused in one line."""
    from odml.zoo.tflite_graph import GraphError, densify

    rng = np.random.default_rng(0)
    dense = rng.standard_normal((5, 1, 1, 7)).astype(np.float16) * (rng.random((5, 1, 1, 7)) < 0.4)
    rows = dense.reshape(5, 7)
    seg = np.concatenate([[0], np.cumsum((rows != 0).sum(1))])
    idx = np.concatenate([np.nonzero(r)[0] for r in rows])
    vec = SimpleNamespace
    dims = [vec(format=0, denseSize=5), vec(format=0, denseSize=1), vec(format=0, denseSize=1),
            vec(format=1, denseSize=0, arraySegments=vec(values=seg), arrayIndices=vec(values=idx))]
    sp = vec(traversalOrder=[0, 1, 2, 3], blockMap=None, dimMetadata=dims)
    np.testing.assert_array_equal(densify(rows[rows != 0], [5, 1, 1, 7], sp, "t"), dense)
    with pytest.raises(GraphError, match="values for"):
        densify(rows[rows != 0][:-1], [5, 1, 1, 7], sp, "t")
