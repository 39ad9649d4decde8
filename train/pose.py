"""Training BlazePose: the detector (focal loss on anchor scores, Huber on the
box and alignment keypoints of positive anchors), then the landmark model in
two stages as in the paper: (1) the encoder and heatmap tower with a heatmap +
offset loss, (2) with those frozen, the regression tower (coordinates, z,
visibility, presence, pose flag), so that the heatmap supervises the features
the regression uses; the heatmap heads are not in the deployed model.

Data: ``synthetic`` (people generated on the fly, a fixed held-out set for
validation) or a COCO-style keypoint JSON (points not labelled are masked).
Each stage ends in a checkpoint in the output folder; an interrupted run
resumes at the stage (and step) where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml import interrupts
from odml.data.pose import LEFT_SHOULDER, RIGHT_HIP, PoseSample, alignment_points, torso_size
from odml.data.pose_geometry import anchor_strides, anchors, letterbox, pck, roi_from_alignment
from odml.data.pose_items import Samples, batches, detector_item, heatmap_targets, landmark_item
from odml.errors import DataError, OutputError
from odml.files import atomic_output, write_json_atomic
from odml.runfolder import RunFolder
from odml.zoo.poseconfig import LANDMARKS, NUM_KEYPOINTS, pose_config

SETTINGS = "train.json"  # the settings of the run (a rerun with other settings is refused)
STATE = "train_state.json"  # the steps each stage has finished


@dataclass
class PoseTrainConfig:
    landmark: str = "blazepose_lite"
    detector: str = "blazepose_detector"
    detector_steps: int = 300
    heatmap_steps: int = 700
    regression_steps: int = 2000
    batch_size: int = 8  # more updates per minute: on 2 CPU cores it learns faster than 16
    learning_rate: float = 2e-3
    jitter: float = 0.08  # ROI jitter in training (shift as a fraction of the size; scale and angle follow)
    val_images: int = 200
    seed: int = 0


# --- losses -------------------------------------------------------------------------------------------------

def _tf():
    from odml._tf import tf

    return tf()


def detector_loss(out: dict, b: dict) -> Any:
    tf = _tf()
    logits = out["logits"][..., 0]
    y = b["labels"]
    npos = tf.maximum(tf.reduce_sum(y), 1.0)
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits)
    pt = y * p + (1 - y) * (1 - p)
    focal = tf.reduce_sum((0.25 * y + 0.75 * (1 - y)) * (1 - pt) ** 2 * ce) / npos
    hub = tf.keras.losses.Huber(reduction="none")(b["reg"][..., None], out["regressors"][..., None])
    reg = tf.reduce_sum(hub * y[..., None]) / npos
    return focal + 2.0 * reg


def heatmap_loss(out: dict, b: dict) -> Any:
    tf = _tf()
    heat = tf.nn.sigmoid_cross_entropy_with_logits(labels=b["heat"], logits=out["heatmap"])
    w = 1.0 + 20.0 * b["heat"]  # most cells are background
    hl = tf.reduce_mean(heat * w)
    om = tf.repeat(b["omask"], 2, axis=-1)
    ol = tf.reduce_sum(tf.abs(out["offsets"] - b["offs"]) * om) / tf.maximum(tf.reduce_sum(om), 1.0)
    return hl * 10.0 + ol


def regression_loss(out: dict, b: dict) -> Any:
    tf = _tf()
    m = b["mask"][..., None]
    present = b["flags"][..., 1:2] * m
    n = tf.maximum(tf.reduce_sum(present), 1.0)
    xy = tf.reduce_sum(tf.abs(out["coords"][..., :2] - b["coords"][..., :2]) * present) / n
    z = tf.reduce_sum(tf.abs(out["coords"][..., 2:] - b["coords"][..., 2:]) * present) / n
    fl = tf.keras.losses.binary_crossentropy(b["flags"][..., None], out["flags"][..., None])
    fl = tf.reduce_sum(fl * m) / tf.maximum(tf.reduce_sum(m), 1.0)
    pose = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=b["pose"][:, None], logits=out["pose_logit"]))
    return 10.0 * xy + 2.0 * z + 0.5 * fl + 0.5 * pose


# --- the loop -------------------------------------------------------------------------------------------------

def _fit(model: Any, trainable: list, loss_fn: Callable, make: Callable, steps: int, cfg: PoseTrainConfig,
         ckpt: Path, done: int, log: Callable[[str], None], label: str, run: RunFolder, whole: Any = None) -> list[float]:
    tf = _tf()
    sched = tf.keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(steps, 1), alpha=0.05)
    opt = tf.keras.optimizers.Adam(learning_rate=sched)  # (a resumed stage restarts the schedule)
    @tf.function(reduce_retracing=True)
    def step(b):
        with tf.GradientTape() as tape:
            out = model(b["image"], training=True)
            loss = loss_fn(out, b)
        grads = tape.gradient(loss, trainable)
        opt.apply_gradients([(g, v) for g, v in zip(grads, trainable) if g is not None])
        return loss

    losses = []
    last_save = time.time()
    it = batches(make, cfg.batch_size)
    for i in range(done, steps):
        interrupts.check()
        b = next(it)
        loss = float(step({k: tf.constant(v, tf.float32) for k, v in b.items()}))
        losses.append(loss)
        if (i + 1) % 50 == 0 or i + 1 == steps:
            log(f"{label}: step {i + 1}/{steps} loss {np.mean(losses[-50:]):.4f}")
        if time.time() - last_save > 60 and i + 1 < steps:
            _checkpoint(whole or model, ckpt, label, i + 1, run)
            last_save = time.time()
    return losses


def _checkpoint(model: Any, ckpt: Path, stage: str, step: int, run: RunFolder) -> None:
    with atomic_output(ckpt, ".weights.h5") as tmp:
        model.save_weights(str(tmp))
    st = run.read_state(STATE)
    st[stage] = step
    run.write_state(STATE, st)


def run_folder(out_dir: Path) -> RunFolder:
    return RunFolder(out_dir, SETTINGS, "pose training run", DataError)


def train_pose(data: str, out_dir: Path, cfg: PoseTrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the detector and the landmark model into ``out_dir``
    (detector.keras, landmarks.keras with their model cards, pose.json); an
    interrupted run resumes at the stage and step where it stopped."""
    run = run_folder(out_dir)
    settings = asdict(cfg) | {"data": data}
    run.check(settings)
    with run.lock():
        run.write_settings(settings)
        return _train(data, out_dir, cfg, log, run)


def _train(data: str, out_dir: Path, cfg: PoseTrainConfig, log: Callable[[str], None], run: RunFolder) -> dict[str, Any]:
    from odml.zoo.blazepose import build_pose_model
    from odml.zoo.card import ModelCard
    from odml.zoo.load import save_model
    from odml.zoo.registry import family_of

    tf = _tf()
    tf.keras.utils.set_random_seed(cfg.seed)
    samples = Samples(data, cfg.seed, cfg.val_images)
    rng = np.random.default_rng(cfg.seed + 7)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    # detector
    dcfg = pose_config(cfg.detector)
    det = build_pose_model(dcfg, "blazepose_detector")
    anc, strides = anchors(dcfg.input_size), anchor_strides(dcfg.input_size)
    dck = out_dir / "detector.ckpt.weights.h5"
    if dck.is_file():
        det.train.load_weights(str(dck))
    done = run.read_state(STATE).get("detector", 0)
    if done < cfg.detector_steps:
        ts = time.perf_counter()
        _fit(det.train, det.train.trainable_variables, detector_loss,
             lambda: detector_item(samples.next(), dcfg.input_size, anc, strides), cfg.detector_steps, cfg, dck,
             done, log, "detector", run)
        _checkpoint(det.train, dck, "detector", cfg.detector_steps, run)
        stages["detector_s"] = time.perf_counter() - ts

    # landmarks: stage 1 (heatmap), stage 2 (regression, heatmap tower frozen)
    lcfg = pose_config(cfg.landmark)
    lm = build_pose_model(lcfg, cfg.landmark)
    lck = out_dir / "landmarks.ckpt.weights.h5"
    size, hm = lcfg.input_size, lcfg.heatmap_size

    def lm_item():
        return landmark_item(samples.next(), size, rng, cfg.jitter, hm)

    stages.update(_landmark_stages(lm, lm_item, cfg, lck, run, log))

    # evaluation on the held-out images, then the deployable models with their cards
    ev = evaluate_landmarks(lm, samples.val)
    dev = evaluate_detector(det.deploy, samples.val, anc)
    from odml.pose.pipeline import PoseTracker

    tracker = PoseTracker(det.deploy, lm.deploy)
    pipe = evaluate_pipeline(tracker, samples.val)
    save_model(det.deploy, out_dir / "detector.keras", ModelCard(family_of(cfg.detector), dcfg, "detector"))
    save_model(lm.deploy, out_dir / "landmarks.keras", ModelCard(family_of(cfg.landmark), lcfg, "landmarks"))
    from odml.zoo.poseconfig import count

    res = {
        "data": data, "config": asdict(cfg), "wall_s": round(time.perf_counter() - t0, 1), "stages": stages,
        "detector": {"name": cfg.detector, "params": det.deploy.count_params(), **dev},
        "landmarks": {"name": cfg.landmark, "params": lm.deploy.count_params(), "macs": count(lcfg)["macs"], **ev},
        "pipeline": pipe, "val_images": len(samples.val),
        "files": {"detector": str(out_dir / "detector.keras"), "landmarks": str(out_dir / "landmarks.keras")},
    }
    write_json_atomic(out_dir / "pose.json", res)
    return res


def _landmark_stages(lm: Any, lm_item: Callable[[], dict[str, np.ndarray]], cfg: PoseTrainConfig, lck: Path,
                     run: RunFolder, log: Callable[[str], None], prefix: str = "") -> dict[str, float]:
    """The landmark model's two stages (heatmap, then regression with the
    heatmap tower frozen) on the items ``lm_item`` makes, resumed from the
    checkpoint ``lck`` and the run's state (stage keys after ``prefix``)."""
    if lck.is_file():
        lm.train.load_weights(str(lck))
    tower = set(lm.heatmap_tower)
    stages: dict[str, float] = {}
    hk, rk = f"{prefix}heatmap", f"{prefix}regression"
    st = run.read_state(STATE)
    if st.get(hk, 0) < cfg.heatmap_steps:
        ts = time.perf_counter()
        vars1 = [v for layer in lm.train.layers if layer.name in tower for v in layer.trainable_weights]
        _fit(lm.heat, vars1, heatmap_loss, lm_item, cfg.heatmap_steps, cfg, lck, st.get(hk, 0), log, hk, run, lm.train)
        _checkpoint(lm.train, lck, hk, cfg.heatmap_steps, run)
        stages["heatmap_s"] = time.perf_counter() - ts
    st = run.read_state(STATE)
    if st.get(rk, 0) < cfg.regression_steps:
        ts = time.perf_counter()
        for layer in lm.train.layers:
            layer.trainable = layer.name not in tower
        if not st.get(rk):  # a fresh stage: the coordinates start from the mean pose
            _init_coords_bias(lm.train, [lm_item() for _ in range(64)])
        _fit(lm.train, lm.train.trainable_variables, regression_loss, lm_item, cfg.regression_steps, cfg, lck,
             st.get(rk, 0), log, rk, run)
        _checkpoint(lm.train, lck, rk, cfg.regression_steps, run)
        stages["regression_s"] = time.perf_counter() - ts
        for layer in lm.train.layers:
            layer.trainable = True
    return stages


# --- distillation from a teacher's keypoints (odml compress) ----------------------------------------------

def teacher_item(item: dict[str, np.ndarray], t: np.ndarray, hm: int) -> dict[str, np.ndarray]:
    """A landmark item whose targets are a teacher's outputs ``t`` on its crop
    (odml's layout: LANDMARKS x (x, y as fractions of the crop, z in crop
    widths, visibility, presence as probabilities), then the pose flag): the
    coordinates, the soft flags and the pose flag, and heatmaps around the
    points the teacher finds present."""
    kp = np.asarray(t[:5 * LANDMARKS], np.float32).reshape(LANDMARKS, 5)
    coords, flags = kp[:, :3].copy(), np.clip(kp[:, 3:5], 0.0, 1.0)
    mask = np.ones(LANDMARKS, np.float32)
    inside = ((coords[:, :2] >= 0) & (coords[:, :2] <= 1)).all(1)
    heat, offs, omask = heatmap_targets(coords[:, :2], (flags[:, 1] > 0.5) & inside, hm)
    return {**item, "coords": coords, "flags": flags, "mask": mask, "pose": np.float32(np.clip(t[-1], 0.0, 1.0)),
            "heat": heat, "offs": offs, "omask": omask}


def teacher_reference(teacher: Callable[[np.ndarray], np.ndarray], val: list[PoseSample], size: int,
                      hm: int) -> tuple | None:
    """The held-out people cropped on their true ROI, their true keypoints
    and mask, and the teacher's outputs on the crops (labelled once, for
    every form of a student); None when no image has a person."""
    gt = true_roi_crops(val, size, hm)
    if gt is None:
        return None
    x, truth, mask, _ = gt
    return x, truth, mask, np.concatenate([teacher(x[i:i + 16]) for i in range(0, len(x), 16)])


def teacher_pck(student: Callable[[np.ndarray], np.ndarray], ref: tuple | None, size: int) -> dict[str, Any]:
    """PCK@0.2 of ``student`` (a batch of crops -> odml's landmark layout) against the
    teacher's keypoints of ``ref`` (teacher_reference: the 33 body points the
    teacher finds present, the torso measured on the teacher's points), and
    of both against the ground truth."""
    if ref is None:
        return {"pck@0.2_vs_teacher": None}
    x, truth, mask, t = ref
    s = np.concatenate([student(x[i:i + 16]) for i in range(0, len(x), 16)])
    tk = t[:, :5 * LANDMARKS].reshape(len(x), LANDMARKS, 5)[:, :NUM_KEYPOINTS]
    sk = s[:, :5 * LANDMARKS].reshape(len(x), LANDMARKS, 5)[:, :NUM_KEYPOINTS]
    t_xy, s_xy = tk[..., :2] * size, sk[..., :2] * size
    t_torso = np.hypot(*(t_xy[:, LEFT_SHOULDER] - t_xy[:, RIGHT_HIP]).T)
    t_mask = (tk[..., 4] > 0.5).astype(np.float32)
    torso = np.array([np.hypot(*(p[LEFT_SHOULDER] - p[RIGHT_HIP])) for p in truth])
    return {"pck@0.2_vs_teacher": round(pck(s_xy, t_xy, t_mask, t_torso), 4),
            "student_pck@0.2_vs_truth": round(pck(s_xy, truth, mask, torso), 4),
            "teacher_pck@0.2_vs_truth": round(pck(t_xy, truth, mask, torso), 4), "people": int(len(x))}


def distill_landmarks(teacher: Callable[[np.ndarray], np.ndarray], data: str, out_dir: Path,
                      students: list[tuple[str, Any]], cfg: PoseTrainConfig, run: RunFolder,
                      log: Callable[[str], None] = print,
                      on_student: Callable[[str, dict[str, Any], Callable], None] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Each student (label, Configured landmark model) trained on crops of
    ``data`` (people cropped around a jittered ROI, as the tracker feeds
    them) with the teacher's keypoints as its targets, in the two stages of
    odml's landmark training; saved as ``out_dir/LABEL.keras`` with its card.
    ``teacher`` maps a batch of crops to odml's landmark layout. A student
    whose model exists is not trained again; one interrupted resumes."""
    from odml.zoo.blazepose import build_pose_model
    from odml.zoo.card import ModelCard
    from odml.zoo.load import load_keras_model, save_model

    tf = _tf()
    samples = Samples(data, cfg.seed, cfg.val_images)
    out: dict[str, dict[str, Any]] = {}
    refs: dict[tuple[int, int], Any] = {}  # the teacher's labels of the held-out crops, per crop size
    for label, student in students:
        scfg = student.config
        path = out_dir / f"{label}.keras"
        size, hm = scfg.input_size, scfg.heatmap_size
        tf.keras.utils.set_random_seed(cfg.seed)
        lm = build_pose_model(scfg, label)
        ts = time.perf_counter()
        if path.is_file():
            lm.deploy.set_weights(load_keras_model(path).get_weights())
            stages: dict[str, float] = {}
        else:
            rng = np.random.default_rng(cfg.seed + 7)

            def item() -> dict[str, np.ndarray]:
                it = landmark_item(samples.next(), size, rng, cfg.jitter, hm)
                return teacher_item(it, teacher(it["image"][None])[0], hm)

            stages = _landmark_stages(lm, item, cfg, out_dir / f"{label}.ckpt.weights.h5", run, log, f"{label}/")
            save_model(lm.deploy, path, ModelCard(student.family, scfg, label))
        if (size, hm) not in refs:
            refs[size, hm] = teacher_reference(teacher, samples.val, size, hm)
        ref = refs[size, hm]
        res = {"file": str(path), "params": int(lm.deploy.count_params()), "stages": stages,
               "train_s": round(time.perf_counter() - ts, 1),
               **teacher_pck(lambda x: lm.deploy.predict(x, verbose=0), ref, size)}
        out[label] = res
        if on_student:  # with the PCK against the teacher of any other form of the student (its int8 file)
            on_student(label, res, lambda fn, ref=ref, size=size: teacher_pck(fn, ref, size))
    return out


def _init_coords_bias(model: Any, items: list[dict[str, np.ndarray]]) -> None:
    """The regression heads' biases set to the mean target (coordinates) and
    the mean flags' log-odds, so that the tower learns the residual."""
    m = np.stack([it["mask"] for it in items])[..., None]
    coords = (np.stack([it["coords"] for it in items]) * m).sum(0) / np.maximum(m.sum(0), 1)
    flags = np.clip(np.stack([it["flags"] for it in items]).mean(0), 0.05, 0.95)
    for name, value in (("coords", coords), ("flags", np.log(flags / (1 - flags)))):
        layer = model.get_layer(name)
        k, b = layer.get_weights()
        if name == "coords" and b.size == LANDMARKS:  # x, y read out by a soft-argmax: this head is z alone
            value = coords[:, 2]
        layer.set_weights([k, value.reshape(b.shape).astype(np.float32)])


# --- evaluation -----------------------------------------------------------------------------------------------

def true_roi_crops(val: list[PoseSample], size: int, hm: int = 8):
    """The held-out people cropped on their true ROI: (crops (n, size, size,
    3), true keypoints (n, 33, 2) in crop pixels, the mask of points that
    count, torso sizes); None when no image has a person."""
    people = [s for s in val if s.people]
    if not people:
        return None
    rng = np.random.default_rng(0)
    items = [landmark_item(s, size, rng, 0.0, hm) for s in people]
    x = np.stack([it["image"] for it in items])
    truth = np.stack([it["coords"][:NUM_KEYPOINTS, :2] for it in items]) * size
    mask = np.stack([it["mask"][:NUM_KEYPOINTS] * it["flags"][:NUM_KEYPOINTS, 1] * s.visible[0]
                     for it, s in zip(items, people)])
    torso = np.array([np.hypot(*(t[LEFT_SHOULDER] - t[RIGHT_HIP])) for t in truth])
    return x, truth, mask, torso


def evaluate_landmarks(lm: Any, val: list[PoseSample]) -> dict[str, Any]:
    """PCK@0.2 of the landmark model on ground-truth ROIs of the held-out
    people: the regression output (deployed), and the heatmap decoded (argmax
    + offset) for comparison."""
    gt = true_roi_crops(val, lm.cfg.input_size, lm.cfg.heatmap_size)
    if gt is None:
        return {"pck@0.2": None}
    x, truth, mask, torso = gt
    size = lm.cfg.input_size
    out = lm.train.predict(x, batch_size=16, verbose=0)
    reg = out["coords"][:, :NUM_KEYPOINTS, :2] * size
    heat = np.asarray(out["heatmap"])[..., :NUM_KEYPOINTS]
    offs = np.asarray(out["offsets"])
    n, g = len(x), heat.shape[1]
    flat = heat.reshape(n, g * g, -1).argmax(1)
    iy, ix = flat // g, flat % g
    ox = np.take_along_axis(offs.reshape(n, g * g, -1)[:, :, 0::2][:, :, :NUM_KEYPOINTS], flat[:, None], 1)[:, 0]
    oy = np.take_along_axis(offs.reshape(n, g * g, -1)[:, :, 1::2][:, :, :NUM_KEYPOINTS], flat[:, None], 1)[:, 0]
    hxy = np.stack([(ix + 0.5 + ox) / g, (iy + 0.5 + oy) / g], -1) * size
    from odml.data.pose import COCO17

    return {"pck@0.2": round(pck(reg, truth, mask, torso), 4),
            "pck@0.2_coco17": round(pck(reg[:, COCO17], truth[:, COCO17], mask[:, COCO17], torso), 4),
            "pck@0.2_heatmap": round(pck(hxy, truth, mask, torso), 4), "people": n}


def evaluate_detector(det: Any, val: list[PoseSample], anc: np.ndarray) -> dict[str, Any]:
    """ROI recall on images with a person: the best detection's ROI centred
    within 10% of the true ROI's side and sized within 25% of it (about the
    jitter the landmark model is trained to absorb); detections on images
    without a person."""
    from odml.data.pose_geometry import decode

    size = det.input_shape[1]
    x, lbs = [], []
    for s in val:
        img, lb = letterbox(s.image, size)
        x.append(img / 127.5 - 1.0)
        lbs.append(lb)
    raw = det.predict(np.stack(x).astype(np.float32), batch_size=16, verbose=0)
    hit, with_p, false, centre_err = 0, 0, 0, []
    for s, r, lb in zip(val, raw, lbs):
        dets = decode(r, anc)
        if s.people:
            with_p += 1
            if dets:
                kp = lb.to_image(dets[0].keypoints)
                got = roi_from_alignment(kp[0], kp[1])
                a = alignment_points(s.keypoints[0], s.mask[0])
                want = roi_from_alignment(a[0], a[1])
                err = math.hypot(got.cx - want.cx, got.cy - want.cy) / want.size
                centre_err.append(err)
                hit += float(err < 0.1 and 0.75 < got.size / want.size < 1.33)
        else:
            false += bool(dets)
    return {"roi_recall": round(hit / max(with_p, 1), 4), "found": len(centre_err), "people": with_p,
            "median_centre_error": round(float(np.median(centre_err)), 4) if centre_err else None,
            "false_on_empty": false}


def evaluate_pipeline(tracker: Any, val: list[PoseSample]) -> dict[str, Any]:
    """PCK@0.2 of the whole pipeline (detector -> ROI -> landmarks) on each
    held-out image alone (no tracking); a missed person counts as all wrong."""
    preds, truths, masks, torsos = [], [], [], []
    for s in val:
        if not s.people:
            continue
        tracker.reset()
        r = tracker.process(s.image)
        kp = r.keypoints[:, :2] if r is not None else np.full((NUM_KEYPOINTS, 2), -1e6)
        preds.append(kp)
        truths.append(s.keypoints[0, :, :2])
        masks.append(s.mask[0] * s.visible[0])
        torsos.append(torso_size(s.keypoints[0]))
    if not preds:
        return {"pck@0.2": None}
    return {"pck@0.2": round(pck(np.stack(preds), np.stack(truths), np.stack(masks), np.array(torsos)), 4)}


def train_entry(c: Any, req: Any, out_dir: Path, progress: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """`odml train blazepose`: the detector and the landmark model that the
    family pairs (--variant), in three stages of --steps, into the folder OUT."""
    fam = c.family
    detector, landmark = fam.pair(c.name, req.variant)
    try:
        d, h, r = (int(v) for v in req.steps.split(","))
        assert min(d, h, r) >= 0
    except (ValueError, AssertionError):
        raise DataError(f"--steps {req.steps!r}: expected three counts, e.g. 600,600,900") from None
    data = req.data or "synthetic"
    fam.check_data(data)
    if data != "synthetic":
        from odml.data.pose import read_coco

        read_coco(data)  # bad files fail here, before anything is written
    if out_dir.suffix in (".keras", ".h5") or (out_dir.exists() and not out_dir.is_dir()):
        raise OutputError(f"{out_dir}: blazepose writes a folder (detector.keras, landmarks.keras, pose.json)")
    if not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    cfg = PoseTrainConfig(landmark=landmark, detector=detector, detector_steps=d, heatmap_steps=h, regression_steps=r,
                          batch_size=req.batch(fam), learning_rate=req.lr(fam), seed=req.seed,
                          val_images=req.val_images)
    res = train_pose(data, out_dir, cfg, log)
    lm, dt = res["landmarks"], res["detector"]

    def f4(v: Any) -> str:  # None: no person among the held-out images
        return "-" if v is None else f"{v:.4f}"

    res["summary"] = [
        ("landmark PCK@0.2 (ground-truth ROI)", f4(lm["pck@0.2"])),
        ("landmark PCK@0.2, COCO-17 points", f4(lm.get("pck@0.2_coco17"))),
        ("pipeline PCK@0.2 (detector -> ROI -> landmarks)", f4(res["pipeline"]["pck@0.2"])),
        ("detector ROI recall", f"{dt['roi_recall']:.4f}"),
        ("landmark parameters", f"{lm['params']:,}"), ("landmark MACs", f"{lm['macs'] / 1e6:.1f}M"),
        ("detector parameters", f"{dt['params']:,}"), ("validation images", str(res["val_images"])),
        ("train wall time", f"{res['wall_s']:.1f} s"), ("models", str(out_dir))]
    res["title"] = f"trained BlazePose ({landmark}) on {data}"
    return res
