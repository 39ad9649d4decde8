"""Data readers: the embedded digits, image folders, .npz, and their errors."""

import numpy as np
import pytest
from helpers import make_image_folder

from odml.data.images import load_images, stratified_split
from odml.errors import DataError


def test_digits_embedded_real_and_deterministic():
    a = load_images("digits", (16, 16), 3, 0.2, seed=1)
    b = load_images("digits", (16, 16), 3, 0.2, seed=1)
    c = load_images("digits", (16, 16), 3, 0.2, seed=2)
    assert len(a.y_train) + len(a.y_val) == 1797 and a.num_classes == 10
    assert a.x_train.shape[1:] == (16, 16, 3) and a.x_train.dtype == np.uint8
    np.testing.assert_array_equal(a.y_val, b.y_val)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_val, c.x_val)
    # stratified: every class in the validation split, in about the same proportion
    counts = np.bincount(a.y_val, minlength=10)
    assert counts.min() >= 30 and abs(len(a.y_val) / 1797 - 0.2) < 0.01
    assert a.x_train.max() == 255 and a.x_train.min() == 0


def test_split_has_no_overlap():
    y = np.repeat(np.arange(3), [5, 7, 2])
    tr, va = stratified_split(y, 0.3, 0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(y)
    assert set(y[va]) == {0, 1, 2} and set(y[tr]) == {0, 1, 2}


def test_folder_with_mixed_sizes_is_resized(tmp_path):
    make_image_folder(tmp_path / "ds", classes=("b_dog", "a_cat"), per_class=6)
    (tmp_path / "ds" / "notes.txt").write_text("not an image folder entry")
    ds = load_images(str(tmp_path / "ds"), (24, 24), 3, 0.25, 0)
    assert ds.class_names == ["a_cat", "b_dog"]  # sorted, as Keras does
    assert ds.x_train.shape[1:] == (24, 24, 3)
    assert len(ds.y_train) + len(ds.y_val) == 12
    assert any("resized" in n for n in ds.notes)
    # a_cat (label 0) was written darker than b_dog (label 1)
    x = np.concatenate([ds.x_train, ds.x_val]).mean(axis=(1, 2, 3))
    y = np.concatenate([ds.y_train, ds.y_val])
    assert x[y == 0].mean() > x[y == 1].mean()


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_images(str(tmp_path / "empty"), (8, 8))
    (tmp_path / "empty" / "a").mkdir()
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_images(str(tmp_path / "empty"), (8, 8))


def test_single_class_folder(tmp_path):
    make_image_folder(tmp_path / "one", classes=("only",), per_class=3)
    with pytest.raises(DataError, match="only one class"):
        load_images(str(tmp_path / "one"), (8, 8))


def test_undecodable_image_is_named(tmp_path):
    make_image_folder(tmp_path / "ds", per_class=3)
    bad = tmp_path / "ds" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as e:
        load_images(str(tmp_path / "ds"), (8, 8))
    assert str(bad) in str(e.value)


def test_missing_source(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_images(str(tmp_path / "nope"), (8, 8))
    with pytest.raises(DataError, match="not found"):
        load_images(str(tmp_path / "nope.npz"), (8, 8))


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 10, 12)).astype("float32")
    y = np.arange(40) % 4
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_images(str(tmp_path / "d.npz"), (16, 16), 3, 0.2, 0)
    assert ds.num_classes == 4 and ds.x_train.shape[1:] == (16, 16, 3) and len(ds.y_val) == 8
    np.savez(tmp_path / "noy.npz", x=x)
    with pytest.raises(DataError, match="missing array 'y'"):
        load_images(str(tmp_path / "noy.npz"), (16, 16))
    np.savez(tmp_path / "len.npz", x=x, y=y[:5])
    with pytest.raises(DataError, match="40 images but 5 labels"):
        load_images(str(tmp_path / "len.npz"), (16, 16))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read"):
        load_images(str(tmp_path / "junk.npz"), (16, 16))
    np.savez(tmp_path / "range.npz", x=x * 7, y=y)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load_images(str(tmp_path / "range.npz"), (16, 16))


@pytest.mark.fast
def test_shapes_is_generated_deterministic_balanced_and_not_trivial():
    """The generated proxy task: the same images whatever the count or the
    split seed, ten balanced classes, and not separable from raw pixels by a
    linear model (colour and position say nothing of the class)."""
    from sklearn.linear_model import LogisticRegression

    from odml.data.images import load_images
    from odml.data.shapes import CLASSES, generate

    x, y = generate(400, 16)
    x2, _ = generate(100, 16)
    assert np.array_equal(x[:100], x2) and np.bincount(y).tolist() == [40] * 10
    a = load_images("shapes:1000", (16, 16), seed=0)
    b = load_images("shapes:1000", (16, 16), seed=1)
    assert a.class_names == list(CLASSES) and a.num_classes == 10 and a.x_train.shape[1:] == (16, 16, 3)
    assert np.array_equal(np.sort(np.concatenate([a.y_train, a.y_val])), np.sort(np.concatenate([b.y_train, b.y_val])))
    assert not np.array_equal(a.y_val, b.y_val)  # the split follows --seed, the images do not
    g = load_images("shapes:200", (12, 20), channels=1)
    assert g.x_train.shape[1:] == (12, 20, 1)
    lin = LogisticRegression(max_iter=300).fit(a.x_train.reshape(len(a.x_train), -1) / 255.0, a.y_train)
    assert lin.score(a.x_val.reshape(len(a.x_val), -1) / 255.0, a.y_val) < 0.4  # chance is 0.1


@pytest.mark.fast
@pytest.mark.parametrize("bad", ["shapes:abc", "shapes:10", "shapes:"])
def test_shapes_count_must_be_a_number(cli, bad):
    from helpers import assert_one_line_error

    assert_one_line_error(cli("train", "mobilenet_edgetpu_v2_tiny", "--data", bad, "--epochs", "1", "--out", "x.keras"),
                          "shapes:N takes a number of images")
