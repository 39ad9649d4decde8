"""Text models through the user's flow: MobileBERT(-EdgeTPU) sizes, the
WordPiece tokenizer, `odml train` / `export` / `bench` / `zoo list` on the SMS
Spam Collection, the end-to-end helper on raw strings, and bad input."""

import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import SHARED
from helpers import assert_one_line_error

SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection.tsv"
needs_sms = pytest.mark.usefixtures("sms")  # skips saying why (fails under CI) without ../shared/data
TINY_BERT = ["--set", "layers=1", "--set", "hidden=32", "--set", "intra=16", "--set", "intermediate=32",
             "--set", "embedding=8", "--max-len", "24", "--vocab-size", "300"]


def test_mobilebert_sizes_match_the_published_encoders():
    from odml.zoo.builder import trainable_params
    from odml.zoo.mobilebert import build_mobilebert
    from odml.zoo.families.mobilebert import PRESETS as MOBILEBERT_PRESETS
    from odml.zoo.families.mobilebert import PUBLISHED as MOBILEBERT_PUBLISHED

    for name, cfg in MOBILEBERT_PRESETS.items():
        assert abs(cfg.encoder_params / MOBILEBERT_PUBLISHED[name] - 1) < 0.01, name
    # the count from the configuration is the built model's, at full size and for odd shapes
    xs = MOBILEBERT_PRESETS["mobilebert_edgetpu_xs"]
    assert trainable_params(build_mobilebert(xs)) == xs.params
    odd = replace(xs, layers=2, hidden=48, intra=24, intermediate=40, ffn=3, heads=4, embedding=8, vocab=97,
                  seq_len=20, max_positions=30, num_classes=3)
    assert trainable_params(build_mobilebert(odd)) == odd.params
    assert odd.params > odd.encoder_params


def test_wordpiece_vocab_and_encoding(tmp_path):
    from odml.data.wordpiece import SPECIALS, WordPiece, read_vocab, train_vocab
    from odml.errors import DataError

    texts = ["free entry to win a prize", "call me when you are home", "winner winner claim your prize"] * 20
    vocab = train_vocab(texts, 80)
    assert vocab[: len(SPECIALS)] == SPECIALS and len(vocab) <= 80 and len(set(vocab)) == len(vocab)
    wp = WordPiece(vocab, 6)
    ids, cut = wp.encode(["winner prize", "call me when you are home please"])
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    assert ids.dtype == np.int32 and ids.shape == (2, 6)
    assert ids[0, 0] == cls and sep in ids[0] and ids[0, -1] == 0  # short: [CLS] ... [SEP] then [PAD] = 0
    assert cut == 1 and ids[1, -1] == sep and 0 not in ids[1]  # long: cut, still ends with [SEP]
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(vocab) + "\n")
    assert read_vocab(p) == vocab
    for bad, msg in ((["[UNK]", "[PAD]", "[CLS]", "[SEP]"], "line 1 must be [PAD]"),
                     (["[PAD]", "[UNK]", "[CLS]"], "no [SEP]"),
                     (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "a"], "line 6: token 'a' repeats line 5")):
        p.write_text("\n".join(bad) + "\n")
        with pytest.raises(DataError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            read_vocab(p)


def test_zoo_list_shows_text_models(cli):
    from odml.zoo.families.mobilebert import PRESETS as MOBILEBERT_PRESETS
    from odml.zoo.families.pqrnn import PRESETS as PQRNN_PRESETS

    r = cli("zoo", "list", "--json")
    rows = {m["name"]: m for m in r.json()["models"]}
    assert rows["pqrnn"]["params"] == PQRNN_PRESETS["default"].params
    assert rows["pqrnn_tiny"]["params"] == PQRNN_PRESETS["tiny"].params
    for name, cfg in MOBILEBERT_PRESETS.items():
        assert rows[name]["encoder_params"] == cfg.encoder_params and rows[name]["task"] == "text_classification"
    assert "mobilenet_edgetpu_v2_s" in rows  # image models still listed
    r = cli("zoo", "list", "edgetpu_xs")
    assert "mobilebert_edgetpu_xs" in r.stdout and "27,006,720" in r.stdout
    r = cli("zoo", "show", "pqrnn", "--classes", "5", "--json")
    assert r.exit_code == 0 and r.json()["params"] == replace(PQRNN_PRESETS["default"], num_classes=5).params


@needs_sms
def test_pqrnn_train_export_bench_and_raw_strings(cli, tmp_path):
    from odml.devices.classify import TextClassifier
    from odml.zoo.card import ModelCard

    model = tmp_path / "pq.keras"
    r = cli("train", "pqrnn_tiny", "--data", SMS, "--epochs", "3", "--out", model, "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["train"]
    assert res["val_auc"] > 0.8 and res["val_samples"] == 1114 and res["truncated"]["val"] > 0
    info = ModelCard.load(model)
    assert info.family.name == "pqrnn" and info.labels == ["ham", "spam"] and info.input.shape[0] == 24
    r = cli("export", model, "--data", SMS, "--quantize", "fp32,int8", "--out", tmp_path / "exp", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["text"] == "pqrnn" and rep["parity_inputs"] == "validation data"
    i8 = next(a for a in rep["artifacts"] if a["precision"] == "int8")
    assert i8["parity"]["top1_agreement"] > 0.95
    assert not [op for op in i8["ops"] if op.startswith("CUSTOM") or op.startswith("Flex")]
    tfl = tmp_path / "exp" / "pq_int8.tflite"
    r = cli("inspect", tfl, "--json")
    meta = r.json()["inspect"]["metadata"]
    assert meta["labels"] == ["ham", "spam"] and meta["inputs"] == ["projection"]
    # bench on the texts: accuracy and AUC of the int8 file through the real interpreter
    r = cli("bench", tfl, "--data", SMS, "--json")
    assert r.exit_code == 0, r.stderr
    c = r.json()["bench"][0]["classification"]
    assert c["texts"] == 1114 and c["auc"] > 0.75 and c["mean_latency_ms"] > 0
    assert c["accuracy"] == pytest.approx(i8["parity"]["tflite_accuracy"], abs=0.03)  # 100 vs 1114 texts
    # raw strings in, labels out; the same as featurizing by hand
    clf = TextClassifier(tfl)
    texts = ["WINNER!! You have won a 1000 cash prize, call 09061701461 to claim now",
             "ok, see you at home tonight"]
    p = clf.probabilities(texts)
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert [lbl for lbl, _ in clf.predict(texts)] == [["ham", "spam"][i] for i in p.argmax(1)]


@needs_sms
def test_mobilebert_train_export_fp16_int8(cli, tmp_path):
    model = tmp_path / "mb.keras"
    r = cli("train", "mobilebert_edgetpu_xs", "--data", SMS, "--epochs", "1", "--out", model, *TINY_BERT, "--json")
    assert r.exit_code == 0, r.stderr
    res = r.json()["train"]
    assert res["family"] == "mobilebert" and res["config"]["seq_len"] == 24 and res["config"]["vocab"] <= 300
    r = cli("export", model, "--data", SMS, "--quantize", "fp16,int8", "--out", tmp_path / "exp", "--json")
    assert r.exit_code == 0, r.stderr
    arts = {a["precision"]: a for a in r.json()["export"]["artifacts"]}
    for a in arts.values():
        assert not [op for op in a["ops"] if op.startswith("CUSTOM") or op.startswith("Flex")]
        assert "FULLY_CONNECTED" in a["ops"] and "GATHER" in a["ops"]
        assert a["parity"]["top1_agreement"] > 0.95
    r = cli("inspect", tmp_path / "exp" / "mb_int8.tflite", "--json")
    meta = r.json()["inspect"]["metadata"]
    vocab = json.loads((tmp_path / "mb.odml.json").read_text())["vocab"]
    assert meta["inputs"] == ["input_ids"] and meta["vocab_size"] == len(vocab) and "vocab.txt" in meta["associated_files"]
    r = cli("bench", tmp_path / "exp" / "mb_int8.tflite", "--runs", "5", "--json")
    assert r.exit_code == 0 and r.json()["bench"][0]["median_ms"] > 0  # random token ids within range
    # token ids cannot be mixed: distillation's mixup is refused before anything is written
    r = cli("compress", model, "--data", SMS, "--augment", "mixup", "--out", tmp_path / "never")
    assert_one_line_error(r, "mixup needs float inputs", "dropout")
    assert not (tmp_path / "never").exists()


def test_export_untrained_text_zoo_model_at_a_sequence_length(cli, tmp_path):
    r = cli("export", "pqrnn_tiny", "--input-size", "16", "--quantize", "fp32", "--parity-samples", "5",
            "--out", tmp_path / "x", "--json")
    assert r.exit_code == 0, r.stderr
    rep = r.json()["export"]
    assert rep["input_shape"] == [16, 64] and rep["input_dtype"] == "float32"


@needs_sms
def test_text_bad_input(cli, tmp_path):
    out = tmp_path / "m.keras"
    cases = [
        (["train", "pqrnn_tiny", "--data", "digits", "--out", out], "trains on a .tsv"),
        (["train", "pqrnn_tiny", "--data", SMS, "--set", "depth=3", "--out", out], "--set 'depth=3'"),
        (["train", "pqrnn_tiny", "--data", SMS, "--set", "hidden=big", "--out", out], "hidden takes a int"),
        (["train", "pqrnn_tiny", "--data", SMS, "--set", "features=30", "--out", out], "multiple of 4"),
        (["train", "mobilebert_edgetpu_xs", "--data", SMS, "--set", "heads=3", "--set", "intra=16", "--out", out],
         "3 heads do not divide"),
        (["export", "pqrnn_tiny", "--input-size", "8x8", "--quantize", "fp32", "--out", tmp_path / "e"],
         "one sequence length"),
    ]
    bad_vocab = tmp_path / "vocab.txt"
    bad_vocab.write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n")
    cases.append((["train", "mobilebert_edgetpu_xs", "--data", SMS, "--vocab", bad_vocab, "--out", out],
                  "line 1 must be [PAD]"))
    one_class = tmp_path / "one.tsv"
    one_class.write_text("ham\thello\nham\tthere\nham\tagain\n")
    cases.append((["train", "pqrnn_tiny", "--data", one_class, "--out", out], "single class"))
    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("ham\thello\nspam\tfree\tprize\nham\tok\n")
    cases.append((["train", "pqrnn_tiny", "--data", ragged, "--out", out], "line 2: 3 columns"))
    not_utf8 = tmp_path / "latin1.tsv"
    not_utf8.write_bytes("ham\thello\nspam\tfr\xe9e prize\n".encode("latin-1"))
    cases.append((["train", "pqrnn_tiny", "--data", not_utf8, "--out", out], "line 2: bytes that are not UTF-8"))
    for args, msg in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, r.stderr)
    assert not out.exists() and not (tmp_path / "m.odml.json").exists() and not (tmp_path / "e").exists()


@needs_sms
def test_text_model_with_other_classes_is_refused_by_export(cli, tmp_path):
    model = tmp_path / "pq.keras"
    assert cli("train", "pqrnn_tiny", "--data", SMS, "--epochs", "1", "--out", model, "--json").exit_code == 0
    three = tmp_path / "three.tsv"
    three.write_text("".join(f"{c}\tmessage number {i}\n" for i in range(30) for c in ("a", "b", "c")))
    r = cli("export", model, "--data", three, "--quantize", "fp32", "--out", tmp_path / "e")
    assert r.exit_code == 2 and "classes" in r.stderr and not (tmp_path / "e").exists()
    r = cli("export", model, "--data", "digits", "--quantize", "fp32", "--out", tmp_path / "e")
    assert r.exit_code == 2 and "text data needs a text model" in r.stderr
