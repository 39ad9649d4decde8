"""odml pose: BlazePose on an image or a video (detector -> ROI -> landmarks,
the ROI tracked from frame to frame), the skeleton drawn; and odml pose-data:
synthetic people written as images + COCO-style keypoint JSON (and a video)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from odml.cli.common import handle_errors, out, print_json
from odml.files import atomic_output, write_bytes_atomic, write_text_atomic


@handle_errors
def pose_cmd(
    source: Path = typer.Argument(..., help="An image (PNG, JPEG, ...) or a video (.mp4, .mov, .avi, .mkv, .webm, .gif)."),
    model: Optional[str] = typer.Option(None, "--model", help="Folder with detector.{keras,tflite} and landmarks.{keras,tflite} ('odml train blazepose' writes one), or 'mediapipe' for MediaPipe's released models ('odml zoo import-mediapipe'). Default: the released models when imported, else runs/pose."),
    detector: Optional[Path] = typer.Option(None, "--detector", help="The detector model (.keras or .tflite), instead of --model's."),
    landmarks: Optional[Path] = typer.Option(None, "--landmarks", help="The landmark model (.keras or .tflite), instead of --model's."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Annotated image (.png/.jpg) or video (.mp4/.gif) with the skeleton drawn."),
    keypoints_out: Optional[Path] = typer.Option(None, "--keypoints", help="Write the keypoints of every frame as JSON."),
    min_detection: float = typer.Option(0.5, "--min-detection", help="Detector score threshold."),
    min_pose: float = typer.Option(0.5, "--min-pose", help="Pose-flag threshold under which the person counts as lost."),
    prefer: str = typer.Option("keras", "--prefer", help="With --model: 'keras' or 'tflite' files first."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Find the person's 33 keypoints in SOURCE and draw the skeleton. 'no person
    found' is a result (exit 0), not an error."""
    from odml.data.pose import read_image
    from odml.errors import DataError, OutputError
    from odml.pose.pipeline import PoseTracker, draw, is_video, read_frames
    from odml.zoo.mediapipe import imported as released_folder

    for p in (out_path, keypoints_out):
        if p is not None and not p.parent.is_dir():
            raise OutputError(f"{p}: output folder {p.parent} does not exist")
    video = is_video(source)
    if out_path is not None:
        ext = out_path.suffix.lower()
        ok = {".mp4", ".gif", ".mov", ".avi", ".mkv", ".webm"} if video else {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
        if ext not in ok:
            raise OutputError(f"{out_path}: a {'video' if video else 'image'} goes to one of {', '.join(sorted(ok))}")
    if prefer not in ("keras", "tflite"):
        raise DataError(f"--prefer: expected keras or tflite, got {prefer!r}")
    if (detector is None) != (landmarks is None):
        raise DataError("--detector and --landmarks go together (or use --model DIR)")
    frames = read_frames(source) if video else iter([read_image(source)])
    first = next(frames)  # decoding errors surface before any model is loaded
    if detector is not None:
        tracker = PoseTracker(detector, landmarks, min_detection, min_pose)
    elif model == "mediapipe" or (model is None and released_folder() is not None):
        tracker = PoseTracker.released(None, prefer, min_detection=min_detection, min_pose=min_pose)
    elif model is None and not Path("runs/pose").is_dir():  # a newcomer: nothing imported, nothing trained
        raise DataError("no pose models yet: run 'odml zoo import-mediapipe' once (MediaPipe's released BlazePose "
                        "models, from the mediapipe wheel), or train your own with 'odml train blazepose' and give "
                        "--model DIR")
    else:
        tracker = PoseTracker.from_dir(model or "runs/pose", prefer, min_detection=min_detection, min_pose=min_pose)
    results, drawn = [], []
    import itertools

    for i, frame in enumerate(itertools.chain([first], frames)):
        r = tracker.process(frame)
        results.append({"frame": i, "person": r is not None, **(r.to_dict() if r is not None else {})})
        if out_path is not None:
            drawn.append(draw(frame, r))
    found = sum(r["person"] for r in results)
    summary = {"source": str(source), "frames": len(results), "frames_with_person": found,
               "detector_runs": sum(1 for r in results if r.get("detected")), "results": results}
    if out_path is not None:
        _write_media(out_path, drawn, video)
    if keypoints_out is not None:
        import json

        write_text_atomic(keypoints_out, json.dumps(summary, indent=1) + "\n")
    if json_out:
        print_json({"pose": summary})
        return
    if not video:
        r = results[0]
        if not r["person"]:
            out.print("no person found", markup=False)
        else:
            vis = sum(k["visibility"] >= 0.5 for k in r["keypoints"])
            out.print(f"person found: pose score {r['score']:.3f}, {vis} of 33 keypoints visible, ROI "
                      f"{r['roi']}", markup=False)
    else:
        out.print(f"{len(results)} frames: a person in {found}, the detector ran on "
                  f"{summary['detector_runs']} (the others were tracked)", markup=False)
        if not found:
            out.print("no person found", markup=False)
    if out_path is not None:
        out.print(f"annotated {'video' if video else 'image'} written to {out_path}", markup=False)


def _write_media(path: Path, frames: list, video: bool) -> None:
    import io

    import numpy as np

    if not video:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frames[0]).save(buf, format=(path.suffix.lstrip(".").upper().replace("JPG", "JPEG")))
        write_bytes_atomic(path, buf.getvalue())
        return
    import imageio.v3 as iio

    stack = np.stack(frames)
    with atomic_output(path) as tmp:
        if path.suffix.lower() == ".gif":
            iio.imwrite(tmp, stack, duration=100, loop=0)
        else:
            h, w = stack.shape[1:3]
            stack = stack[:, : h - h % 2, : w - w % 2]  # yuv420p needs even sides
            iio.imwrite(tmp, stack, fps=10)


@handle_errors
def pose_data_cmd(
    out_dir: Path = typer.Option(..., "--out", help="Folder for the images and person_keypoints.json (created)."),
    count: int = typer.Option(100, "--count", min=1, help="Number of images."),
    size: int = typer.Option(256, "--size", min=32, help="Image side in pixels."),
    seed: int = typer.Option(0, "--seed"),
    video: Optional[Path] = typer.Option(None, "--video", help="Also write a video of one person moving (.mp4 or .gif)."),
    frames: int = typer.Option(30, "--frames", min=1, help="Frames of --video."),
) -> None:
    """Synthetic people with the 33-point topology on varied backgrounds, as PNG
    images and a COCO-style keypoint JSON (17 COCO points in 'keypoints', all
    33 in 'keypoints33'): data for 'odml train blazepose --data', tests, demos."""
    from odml.data.pose import write_coco
    from odml.errors import OutputError

    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputError(f"{out_dir}: exists and is not empty")
    if not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir}: parent folder {out_dir.parent} does not exist")
    if video is not None and video.suffix.lower() not in (".mp4", ".gif"):
        raise OutputError(f"{video}: --video writes .mp4 or .gif")
    path = write_coco(out_dir, count, seed, (size, size))
    out.print(f"{count} images and {path} written", markup=False)
    if video is not None:
        from odml.data.pose import moving_person

        _write_media(video, moving_person(frames, (size, size), seed), True)
        out.print(f"video of {frames} frames written to {video}", markup=False)
