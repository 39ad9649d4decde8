"""Built tf_keras models agree with their specs: trainable parameters exactly,
MACs counted from the layers within 1%; the blocks behave as specified."""

import numpy as np
import pytest

from odml.zoo import ModelSpec, create_model, create_spec, list_models
from odml.zoo.builder import count_macs, trainable_params


@pytest.fixture(scope="module")
def K():
    from odml._tf import keras

    return keras()


@pytest.mark.parametrize("name", ["mobilenet_edgetpu_v2_tiny", "mobilenet_edgetpu_v2_xs", "mobilenet_edgetpu_v2_s",
                                  "mobilenet_edgetpu_v2_m", "mobilenet_edgetpu_v2_l", "mobilenet_edgetpu_v1"])
def test_built_zoo_models_match_their_specs(name, K):
    spec = create_spec(name)
    model = create_model(spec)
    assert trainable_params(model) == spec.params
    assert abs(count_macs(model) / spec.macs - 1) < 0.01
    assert model.output_shape == (None, 1001)
    K.backend.clear_session()


MIXED = ModelSpec.from_dict({
    "name": "mixed", "input_shape": [40, 36, 3], "num_classes": 7, "activation": "relu6", "drop_connect_rate": 0.2,
    "stem": {"filters": 16, "kernel": 3, "stride": 2},
    "blocks": ["fused_k3_e1_s1_c16", "fused_k3_e4_s2_c24", "gc_k3_e4_s1_c24_g4", "grouped_k3_e4_s1_c24_g3_se0.25",
               "dw_k5_e6_s2_c40_se0.25_hswish", "dw_k3_e4_s1_c40", "dw_k3_e4_s1_c40_noskip", "gc_k5_e2_s2_c48_g2_relu"],
    "head": {"filters": 96, "dropout": 0.1},
})


def test_custom_spec_with_every_block_type(K):
    model = create_model(MIXED)
    assert trainable_params(model) == MIXED.params
    assert abs(count_macs(model) / MIXED.macs - 1) < 0.01
    y = model(np.random.rand(2, 40, 36, 3).astype("float32"), training=False)
    assert y.shape == (2, 7)
    names = {l.name: l for l in model.layers}
    # GC-IBN: a native grouped Conv2D, not split/concat
    assert names["block2_expand_conv"].groups == 4 and isinstance(names["block2_expand_conv"], K.layers.Conv2D)
    assert names["block3_group_conv"].groups == 3
    assert not any(isinstance(l, K.layers.Concatenate) for l in model.layers)
    # residual exactly where stride 1 and Cin == Cout and skip is on
    adds = sorted(n for n in names if n.endswith("_add"))
    assert adds == ["block0_add", "block2_add", "block3_add", "block5_add"]
    assert "block4_se_scale" in names and "block3_se_scale" in names
    assert type(names["block4_expand_act"]).__name__ == "HardSwish"
    assert names["stem_act"].max_value == 6.0 and names["block7_expand_act"].max_value is None


def test_hard_swish_values(K):
    from odml.zoo.blocks import HardSwish

    x = np.array([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0], dtype="float32")
    expect = x * np.clip(x + 3, 0, 6) / 6
    np.testing.assert_allclose(HardSwish()(x).numpy(), expect, rtol=1e-6)


def test_drop_connect_only_in_training(K):
    from odml.zoo.blocks import StochasticDepth

    layer = StochasticDepth(0.5)
    x = np.ones((2000, 3), dtype="float32")
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    y = layer(x, training=True).numpy()
    kept = (y[:, 0] > 0).mean()
    assert 0.4 < kept < 0.6  # about half the samples dropped
    assert set(np.unique(y)) <= {0.0, 2.0}  # rows zeroed or scaled by 1/keep, whole rows at a time
    assert (y == y[:, :1]).all()


def test_save_and_load_with_safe_mode(tmp_path, K):
    from odml.zoo.load import load_keras_model

    model = create_model(MIXED)
    x = np.random.rand(3, 40, 36, 3).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    again = load_keras_model(path)
    np.testing.assert_allclose(again(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)


def test_lambda_model_is_refused_by_safe_mode(tmp_path, K):
    from odml.errors import OdmlError
    from odml.zoo.load import load_keras_model

    inp = K.Input((4,))
    model = K.Model(inp, K.layers.Lambda(lambda t: t * 2)(inp))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(OdmlError) as e:
        load_keras_model(path)
    assert str(path) in str(e.value)


def test_small_variants_build_for_32x32(K):
    for name in list_models("mobilenet_edgetpu*"):
        spec = create_spec(name, num_classes=10, input_size=32, width=0.25)
        model = create_model(spec)
        assert trainable_params(model) == spec.params
        assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 10)
    K.backend.clear_session()
