"""The spec language: JSON and one-line round trips, validation, and the cost
model against the published MobileNetEdgeTPU figures (no TensorFlow)."""

import json
import subprocess
import sys

import pytest

from odml.errors import SpecError
from odml.zoo import Block, ModelSpec, create_spec, list_models, parse_block
from odml.zoo.families.ibn import V1_REFERENCE, V2_REFERENCE
from odml.zoo.spec import round_filters

pytestmark = pytest.mark.fast  # the fast tier (make test-fast)

REFERENCE = {f"mobilenet_edgetpu_v2_{k}": v for k, v in V2_REFERENCE.items()}
REFERENCE["mobilenet_edgetpu_v1"] = V1_REFERENCE
# the published figures (Model Garden), written out here so a typo in the zoo module cannot hide
PUBLISHED_PARAMS = {
    "mobilenet_edgetpu_v2_tiny": 3_762_729, "mobilenet_edgetpu_v2_xs": 4_462_697, "mobilenet_edgetpu_v2_s": 5_987_737,
    "mobilenet_edgetpu_v2_m": 8_464_233, "mobilenet_edgetpu_v2_l": 10_923_049, "mobilenet_edgetpu_v1": 4_092_713,
}
PUBLISHED_MACS = {
    "mobilenet_edgetpu_v2_tiny": 512e6, "mobilenet_edgetpu_v2_xs": 708e6, "mobilenet_edgetpu_v2_s": 1198e6,
    "mobilenet_edgetpu_v2_m": 1836e6, "mobilenet_edgetpu_v2_l": 2531e6, "mobilenet_edgetpu_v1": 990e6,
}


def test_zoo_lists_the_six_vision_models():
    assert set(list_models()) >= set(PUBLISHED_PARAMS)
    assert list_models("mobilenet_edgetpu_v2*") == sorted(n for n in PUBLISHED_PARAMS if "v2" in n)
    assert list_models("v1") == ["mobilenet_edgetpu_v1"]


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_equal_the_reference(name):
    spec = create_spec(name)
    assert spec.input_shape == (224, 224, 3) and spec.num_classes == 1001
    assert spec.params == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(PUBLISHED_MACS))
def test_macs_within_two_percent_of_the_reference(name):
    assert abs(create_spec(name).macs / PUBLISHED_MACS[name] - 1) < 0.02


def test_v2_topology_details():
    s = create_spec("mobilenet_edgetpu_v2_s")
    assert len(s.blocks) == 20 and s.stem.kernel == 5 and s.stem.filters == 64 and s.head.filters == 1280
    assert all(b.kernel == 3 for b in s.blocks)
    # G1 block 1 is a GC-IBN; groups = expanded channels / 64
    b = s.blocks[2]
    assert b.type == "ibn_gc" and b.groups == 48 * 4 // 64
    tiny = create_spec("mobilenet_edgetpu_v2_tiny")
    assert [tiny.blocks[i].type for i in (3, 5, 7)] == ["ibn_gc"] * 3  # G2 b0, b2 and G3 b0 grouped in tiny
    assert create_spec("mobilenet_edgetpu_v2_l").stem.kernel == 7
    assert create_spec("mobilenet_edgetpu_v2_m").head.filters == 1344


def test_v1_no_skip_block():
    v1 = create_spec("mobilenet_edgetpu_v1")
    noskip = [b for b in v1.blocks if not b.skip]
    assert len(noskip) == 1 and noskip[0].expansion == 8 and noskip[0].filters == 96


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_json_round_trip(name):
    spec = create_spec(name, num_classes=10, input_size=64, width=0.5)
    again = ModelSpec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()


def test_one_line_block_forms():
    assert parse_block("fused_k3_e8_s2_c48") == Block("ibn_fused", 3, 8, 2, 48)
    assert parse_block("gc_k3_e4_s1_c48_g3") == Block("ibn_gc", 3, 4, 1, 48, groups=3)
    assert parse_block("dw_k3_e4_s1_c96") == Block("ibn_dw", 3, 4, 1, 96)
    b = parse_block("grouped_k5_e6_s2_c64_g4_se0.25_hswish_noskip")
    assert (b.type, b.kernel, b.expansion, b.stride, b.filters, b.groups, b.se, b.activation, b.skip) == (
        "ibn_grouped", 5, 6, 2, 64, 4, 0.25, "hswish", False)
    for line in ["fused_k3_e8_s2_c48", "gc_k3_e4_s1_c48_g3", "dw_k3_e4_s1_c96", "dw_k5_e2.5_s1_c40_se0.25_relu6",
                 "grouped_k5_e6_s2_c64_g4_se0.25_hswish_noskip"]:
        assert parse_block(line).to_line() == line


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_model_line_round_trip(name):
    spec = create_spec(name)
    again = ModelSpec.from_line(spec.to_line(), name=spec.name, input_shape=spec.input_shape,
                                num_classes=spec.num_classes)
    assert again == spec


def test_spec_json_accepts_block_lines():
    d = {"name": "mine", "input_shape": [32, 32, 3], "num_classes": 5,
         "blocks": ["fused_k3_e4_s2_c16", "gc_k3_e4_s1_c16_g2", "dw_k5_e4_s2_c24_se0.25"]}
    s = ModelSpec.from_dict(d)
    assert s.blocks[1].groups == 2 and s.blocks[2].se == 0.25
    assert ModelSpec.from_json(s.to_json()) == s


@pytest.mark.parametrize("blocks, fragment", [
    (["fused_k3_e4_s1_c16", "gc_k3_e4_s1_c24_g5"], "block 1 (gc_k3_e4_s1_c24_g5)"),  # 16 channels / 5 groups
    (["fused_k3_e4_s3_c16"], "block 0"),  # stride 3
    (["dw_k4_e4_s1_c16"], "block 0"),  # even kernel
    (["dw_k3_e4_s1_c16", "dw_k3_e4_s1_c16_g2"], "block 1"),  # groups on a depthwise IBN
    (["fused_k3_e4_s1_c16", "grouped_k3_e3_s1_c16_g5"], "block 1"),  # 48 expanded / 5
])
def test_validation_names_the_offending_block(blocks, fragment):
    with pytest.raises(SpecError) as e:
        ModelSpec.from_dict({"input_shape": [32, 32, 3], "num_classes": 4, "blocks": blocks}, "my.json")
    assert fragment in str(e.value) and str(e.value).startswith("my.json")


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    (json.dumps({"blocks": ["zz_k3_e4_s1_c16"]}), "unknown block type 'zz'"),
    (json.dumps({"blocks": ["dw_k3_s1"]}), "cannot parse block 'dw_k3_s1'"),
    (json.dumps({"blocks": [], "wings": 2}), "unknown key"),
    (json.dumps({"blocks": []}), "no blocks"),
    (json.dumps([1, 2]), "must be a JSON object"),
    (json.dumps({"blocks": [{"type": "ibn_dw", "kernel": 3}]}), "block 0"),
])
def test_bad_specs_get_one_line_errors(text, fragment):
    with pytest.raises(SpecError) as e:
        ModelSpec.from_json(text, "bad.json")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_width_multiplier_rounds_to_multiples_of_eight():
    assert round_filters(48, 0.5) == 24 and round_filters(16, 0.35) == 8 and round_filters(96, 0.75) == 72
    s = create_spec("mobilenet_edgetpu_v2_xs", width=0.35, input_size=32, num_classes=10)
    assert all(b.filters % 8 == 0 for b in s.blocks) and s.stem.filters % 8 == 0
    assert s.params < create_spec("mobilenet_edgetpu_v2_xs", num_classes=10).params / 5
    s.validate()  # group counts were fitted to the narrower channels
    assert s.layers()[-2]["output_shape"] == [1, 1, s.blocks[-1].filters]


def test_overrides_change_shape_and_classes():
    s = create_spec("mobilenet_edgetpu_v1", num_classes=10, input_size="48x64")
    assert s.input_shape == (48, 64, 3) and s.num_classes == 10
    assert s.layers()[0]["output_shape"] == [24, 32, 32]


def test_unknown_model_suggests_close_names():
    from odml.errors import UnknownModelError

    with pytest.raises(UnknownModelError) as e:
        create_spec("mobilenet_edgetpu_v2_smal")
    assert "mobilenet_edgetpu_v2_s" in str(e.value)


def test_spec_and_zoo_do_not_import_tensorflow():
    code = ("import sys, odml.zoo as z; s = z.create_spec('mobilenet_edgetpu_v2_l'); s.params; s.macs; "
            "print(','.join(m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
