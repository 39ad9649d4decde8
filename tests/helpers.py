"""Helpers shared by the tests (conftest.py holds the fixtures)."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared beside this checkout
SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def in_ci() -> bool:
    """CI is set (CI=true, as CI services set it): nothing the tests need may be missing."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need(condition, why: str) -> None:
    """The one way a test says it cannot run here: skip with ``why`` (one
    line: what is missing and how to get it), or, when CI is set, fail with
    it: a CI run must not pass by skipping what it never ran."""
    if condition:
        return
    line = " ".join(str(why).split())
    if in_ci():
        pytest.fail(f"CI is set, so a missing requirement fails: {line}", pytrace=False)
    pytest.skip(line)


def need_sms() -> Path:
    need(SMS.is_file(), f"SMS Spam Collection not found at {SMS}: put the shared data folder beside this checkout "
                        "(../shared/data/sms_spam/SMSSpamCollection.tsv, from the UCI SMS Spam Collection)")
    return SMS


def majority_rate(y) -> float:
    """The accuracy of always answering the most frequent class of ``y``."""
    y = np.asarray(y)
    return float(np.bincount(y).max() / len(y))


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
