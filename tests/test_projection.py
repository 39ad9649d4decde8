"""The pQRNN ternary projection against its written reference."""

import hashlib
import random

import numpy as np

import pytest

pytestmark = pytest.mark.fast  # the fast tier (make test-fast)


def _reference(token, features):
    """The docstring's recipe, written out independently with integers."""
    d = hashlib.shake_128(token.encode("utf-8")).digest(features // 4)
    out = []
    for byte in d:
        for shift in (6, 4, 2, 0):
            code = (byte >> shift) & 3
            out.append({0: 0, 1: 1, 2: -1, 3: 0}[code])
    return out


def test_projection_matches_reference_and_statistics():
    from odml.data.projection import EOS, project

    m, truncated = project("Free  ENTRY in 2 a wkly comp", 10, 64)
    assert not truncated and m.shape == (10, 64) and m.dtype == np.int8
    toks = ["free", "entry", "in", "2", "a", "wkly", "comp", EOS]
    for i, t in enumerate(toks):
        assert m[i].tolist() == _reference(t, 64)
    assert not m[len(toks):].any()  # padding rows
    big, _ = project(" ".join(f"w{i}" for i in range(300)), 301, 512)
    vals = big[:-1].ravel()
    assert abs((vals == 0).mean() - 0.5) < 0.01 and abs((vals == 1).mean() - 0.25) < 0.01


def test_truncation_keeps_the_end_token():
    from odml.data.projection import EOS, project, project_batch

    m, truncated = project("one two three four five", 3, 8)
    assert truncated and m[0].tolist() == _reference("one", 8) and m[2].tolist() == _reference(EOS, 8)
    batch, n = project_batch(["a b c d", "short", ""], 3, 8)
    assert batch.shape == (3, 3, 8) and n == 1
    assert batch[2, 0].tolist() == _reference(EOS, 8) and not batch[2, 1:].any()  # an empty text is just EOS


def test_token_distortion():
    from odml.data.projection import distort

    text = "please call our customer service representative today"
    assert distort(text, random.Random(0), p=0.0) == text
    changed = distort(text, random.Random(0), p=1.0)
    assert changed != text and len(changed.split()) == len(text.split())
    assert distort(text, random.Random(3), p=1.0) == distort(text, random.Random(3), p=1.0)  # seeded
