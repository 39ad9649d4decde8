"""Parity of odml's imported MediaPipe pose models (odml zoo import-mediapipe)
with the released files under LiteRT, on real photographs (scikit-image's
astronaut and cameraman) and synthetic people: keypoints in % of the 256
crop, scores as probabilities, detector boxes in pixels at 224.

    odml zoo import-mediapipe && python tests/bench/mediapipe_parity.py [FOLDER]
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    import skimage.data

    from odml.data.pose import SyntheticPeople
    from odml.data.pose_geometry import crop_roi, letterbox
    from odml.pose.pipeline import PoseTracker
    from odml.zoo.load import load_keras_model
    from odml.zoo.mediapipe import imported, not_imported_message, parity

    folder = imported(sys.argv[1] if len(sys.argv) > 1 else None)
    if folder is None:
        sys.exit(not_imported_message())
    photos = [skimage.data.astronaut()[..., :3], np.stack([skimage.data.camera()] * 3, -1)]
    people = SyntheticPeople((256, 256), seed=3)
    synth = [people.sample().image for _ in range(8)]
    tracker = PoseTracker.released(folder)
    det = load_keras_model(folder / "detector.keras")
    lm = load_keras_model(folder / "landmarks.keras")
    for name, images in (("photos", photos), ("synthetic people", synth)):
        x = np.stack([letterbox(im, 224)[0] / 127.5 - 1.0 for im in images])
        print(f"detector, {name} ({len(images)}):", parity(det, folder / "detector.tflite", "detector", x))
    crops = []
    for im in photos + synth:
        roi = tracker.detect(im)
        if roi is not None:
            crops.append(crop_roi(im, roi, 256) / 255.0)
    x = np.stack(crops)
    print(f"landmarks, the pipeline's crops of {len(crops)} images:",
          parity(lm, folder / "landmarks.tflite", "landmarks", x))


if __name__ == "__main__":
    main()
