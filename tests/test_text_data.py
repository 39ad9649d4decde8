"""The text data reader: TSV/CSV, header detection, columns by name or index,
the stratified split, and a one-line error for every kind of bad file."""

import pytest
from conftest import SHARED

from odml.errors import DataError

pytestmark = pytest.mark.fast  # the fast tier (make test-fast)

SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection.tsv"


@pytest.mark.usefixtures("sms")  # skips saying why (fails under CI) without ../shared/data
def test_sms_spam_collection():
    from odml.data.text import load_text

    d = load_text(SMS)
    assert d.classes == ["ham", "spam"] and len(d.texts_train) + len(d.texts_val) == 5574
    assert int((d.y_train == 1).sum() + (d.y_val == 1).sum()) == 747
    assert len(d.texts_val) == 965 + 149  # 20% of each class, rounded
    again = load_text(SMS)
    assert again.texts_val == d.texts_val  # the split is fixed by the seed
    assert load_text(SMS, seed=1).texts_val != d.texts_val


def _write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def test_header_detection_and_columns(tmp_path):
    from odml.data.text import load_text

    body = "".join(f"{'pos' if i % 2 else 'neg'}\tmessage number {i}\n" for i in range(20))
    d = load_text(_write(tmp_path, "plain.tsv", body))
    assert d.classes == ["neg", "pos"] and len(d.texts_train) + len(d.texts_val) == 20  # no header: all 20 lines
    d = load_text(_write(tmp_path, "head.tsv", "Label\tSMS\n" + body))
    assert len(d.texts_train) + len(d.texts_val) == 20
    swapped = "text,id,kind\n" + "".join(f'"hello, {i}",{i},{"a" if i % 3 else "b"}\n' for i in range(12))
    d = load_text(_write(tmp_path, "s.csv", swapped), label_col="kind", text_col="text")
    assert d.classes == ["a", "b"] and all(t.startswith("hello, ") for t in d.texts_train)
    d = load_text(_write(tmp_path, "s2.csv", swapped), label_col=2, text_col=0, header=True)
    assert d.classes == ["a", "b"]
    with pytest.raises(DataError, match="no label column 'category'"):
        load_text(tmp_path / "s.csv", label_col="category", text_col="text")


def test_empty_texts_are_dropped_and_counted(tmp_path):
    from odml.data.text import load_text

    body = "".join(f"{'x' if i % 2 else 'y'}\t{'' if i % 5 == 0 else 'words ' * i}\n" for i in range(20))
    d = load_text(_write(tmp_path, "e.tsv", body))
    assert len(d.texts_train) + len(d.texts_val) == 16 and d.notes == ["4 empty texts dropped"]


@pytest.mark.parametrize("data,fragments", [
    (b"ham\thello\nspam\tbad \xff\xfe bytes\n", ("line 2", "not UTF-8")),
    ("ham\thello\nspam\thi\tthere\nham\tok\n", ("line 2", "3 columns, expected 2")),
    ("ham\thello\nham\thi\nham\tok\n", ("single class", "ham")),
    ("just one column\nanother\n", ("1 column",)),
    ("", ("no labelled texts", "empty")),
])
def test_bad_text_files(tmp_path, data, fragments):
    from odml.data.text import load_text

    p = _write(tmp_path, "bad.tsv", data)
    with pytest.raises(DataError) as e:
        load_text(p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    for f in fragments:
        assert f in msg
    with pytest.raises(DataError, match="not found"):
        load_text(tmp_path / "missing.tsv")
