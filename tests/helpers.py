"""Helpers shared by the tests (conftest.py holds the fixtures)."""

from pathlib import Path

import numpy as np


def make_image_folder(root: Path, classes=("cat", "dog"), per_class=6, sizes=((20, 24), (32, 32), (17, 40))):
    """Write real PNGs of mixed sizes into class subfolders; class k is brighter."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            arr = (rng.random((h, w, 3)) * 60 + 120 * k).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"img{i}.png")
    return root


def assert_one_line_error(r, *fragments, code=2):
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:"), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in r.stderr + r.stdout
