"""pQRNN: parameters from the config, training on the SMS Spam Collection,
a full-int8 TFLite with builtin ops only, and a safe .keras round trip."""

import copy

import numpy as np
import pytest
from conftest import SHARED

SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def test_params_from_config_equal_the_built_model():
    from odml.zoo.builder import trainable_params
    from odml.zoo.pqrnn import PRESETS, PQRNNConfig, build_pqrnn

    for cfg in (PRESETS["tiny"], PQRNNConfig(max_len=16, features=128, bottleneck=32, hidden=24, layers=2,
                                             num_classes=5)):
        assert trainable_params(build_pqrnn(cfg)) == cfg.params
    assert 500_000 < PRESETS["default"].params < 1_300_000  # pQRNN-sized (the paper: 1.3M 8-bit)


@pytest.mark.usefixtures("sms")  # skips saying why (fails under CI) without ../shared/data
def test_train_export_int8_and_reload(tmp_path):
    from odml._tf import keras
    from odml.data.projection import project_batch
    from odml.data.text import load_text
    from odml.litert import load_interpreter, run_batch
    from odml.exporters.tflite import convert, representative_from
    from odml.numeric import classification_scores as scores
    from odml.train.text import TextTrainConfig, train_pqrnn
    from odml.zoo.pqrnn import PRESETS

    data = load_text(SMS)
    cfg = copy.deepcopy(PRESETS["tiny"])
    res = train_pqrnn(cfg, data, TextTrainConfig(epochs=3), tmp_path / "pq.keras")
    assert res["val_auc"] > 0.8 and res["params"] == cfg.params
    assert res["truncated"]["val"] > 0  # max_len 24: long messages are cut, and counted
    model = keras().models.load_model(tmp_path / "pq.keras", compile=False, safe_mode=True)
    x, _ = project_batch(data.texts_val, cfg.max_len, cfg.features)
    x = x.astype(np.float32)
    keras_logits = model.predict(x, verbose=0)
    tfl = convert(model, "int8", representative_from(x, 100))
    interp = load_interpreter(tfl)
    ops = {d["op_name"] for d in interp._get_ops_details()}
    assert not any(o.startswith("CUSTOM") or o == "FlexDelegate" for o in ops)
    assert interp.get_tensor_details() and "CONV_2D" in ops and "TANH" in ops
    int8_logits = run_batch(interp, x)
    agree = (int8_logits.argmax(-1) == keras_logits.argmax(-1)).mean()
    assert agree > 0.95
    assert abs(scores(int8_logits, data.y_val)["auc"] - res["val_auc"]) < 0.03
