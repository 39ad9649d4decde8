"""`odml export --diagnose` (issue 39): which layer an int8 file loses most
in, mapped back to the Keras layer, shown also when parity fails (which is
when it is wanted)."""

from helpers import assert_one_line_error


def _model_with_an_outlier_channel(path):
    """A small tf_keras model whose 'pw' layer has one channel 500 units off:
    one int8 range for the tensor, so its other channels are squashed to a
    few levels (the classic int8 failure); the other layers plain."""
    from odml._tf import keras

    K = keras()
    K.utils.set_random_seed(0)
    inp = K.Input((16, 16, 3))
    h = K.layers.Conv2D(8, 3, activation="relu", name="first_conv")(inp)
    h = K.layers.DepthwiseConv2D(3, activation="relu", name="dw")(h)
    h = K.layers.Conv2D(16, 1, name="pw")(h)
    h = K.layers.GlobalAveragePooling2D(name="gap")(h)
    m = K.Model(inp, K.layers.Dense(5, name="head")(h))
    w = m.get_layer("pw").get_weights()
    w[1][0] = 500.0
    m.get_layer("pw").set_weights(w)
    m.save(path)
    return path


def test_diagnose_names_the_layer_that_loses_its_channels(cli, tmp_path):
    model = _model_with_an_outlier_channel(tmp_path / "m.keras")
    r = cli("export", model, "--quantize", "int8", "--calibration", "random", "--diagnose", "--out", tmp_path / "e",
            "--json")
    assert r.exit_code in (0, 1), r.stderr  # parity may fail: the diagnosis is in the report all the same
    d = next(a for a in r.json()["export"]["artifacts"] if a["precision"] == "int8")["diagnosis"]
    worst = d["worst"]
    assert worst[0]["layer"] == "pw" and worst[0]["kind"] == "CONV_2D"
    assert worst[0]["added"] > 0.05 and worst[0]["added"] > 20 * max(w["added"] for w in worst[1:])
    assert {w["layer"] for w in worst} >= {"first_conv", "dw", "pw", "head"}  # mapped back, the output's layer too
    r = cli("export", model, "--quantize", "int8", "--calibration", "random", "--diagnose", "--out", tmp_path / "t")
    assert "where int8 loses most" in r.stdout and "pw" in r.stdout


def test_diagnose_without_int8_is_refused(cli, tmp_path):
    out = tmp_path / "never"
    assert_one_line_error(cli("export", "mobilenet_edgetpu_v2_tiny", "--quantize", "fp16", "--diagnose", "--out",
                              out), "--diagnose", "add int8")
    assert not out.exists()
