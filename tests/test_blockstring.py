"""The block-string notation: exact round trips and clear errors."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import archzoo
from archzoo.blockstring import (
    ACTIVATIONS,
    BLOCK_TYPES,
    BlockSpec,
    BlockStringError,
    format_stages,
    parse_block,
    parse_stages,
)
from archzoo.models.efficientnet import EFFICIENTNET_B0
from archzoo.models.mobilenet_v2 import MOBILENET_V2

ZOO_STRINGS = sorted({s for arch in (MOBILENET_V2, EFFICIENTNET_B0) for stage in arch for s in stage})
MOBILE_MODELS = archzoo.list_models("mobilenet_v2*") + archzoo.list_models("efficientnet_b*")


def test_fields_of_a_full_string():
    spec = parse_block("ir_r2_k3_s2_e6_c24_se0.25")
    assert spec == BlockSpec("ir", out_chs=24, repeats=2, kernel=3, stride=2, expansion=6.0, se_ratio=0.25)
    assert isinstance(spec.expansion, float) and spec.act is None and spec.skip
    spec = parse_block("ds_r1_k5_s1_c16_silu_noskip")
    assert (spec.block, spec.kernel, spec.expansion, spec.se_ratio, spec.act, spec.skip) == ("ds", 5, 1.0, None, "silu", False)


@pytest.mark.parametrize("text", ZOO_STRINGS)
def test_zoo_strings_round_trip_exactly(text):
    spec = parse_block(text)
    assert spec.to_string() == text
    assert parse_block(spec.to_string()) == spec


@pytest.mark.parametrize("name", MOBILE_MODELS)
def test_every_built_stage_list_round_trips(name):
    # the scaled stage lists of every variant (B1-B7 are generated) written and read back
    with torch.device("meta"):
        model = archzoo.create_model(name)
    written = format_stages(model.stage_specs)
    assert parse_stages(written) == model.stage_specs
    assert format_stages(parse_stages(written)) == written


def test_defaults_and_token_order_normalise_to_the_canonical_string():
    assert parse_block("ir_e6_c24").to_string() == "ir_r1_k3_s1_e6_c24"
    shuffled = parse_block("ir_se0.25_c24_e6_s2_k3_r2")
    assert shuffled == parse_block("ir_r2_k3_s2_e6_c24_se0.25")
    assert shuffled.to_string() == "ir_r2_k3_s2_e6_c24_se0.25"
    assert parse_block("ir_r1_k3_s1_e6.0_c8_se.5").to_string() == "ir_r1_k3_s1_e6_c8_se0.5"


def _specs():
    def build(block, out_chs, repeats, kernel, stride, expansion, se_ratio, act, skip):
        return BlockSpec(block, out_chs, repeats, kernel, stride, expansion if block == "ir" else 1.0, se_ratio, act, skip)

    positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False, exclude_min=False)
    return st.builds(
        build,
        block=st.sampled_from(sorted(BLOCK_TYPES)),
        out_chs=st.integers(1, 10_000),
        repeats=st.integers(1, 64),
        kernel=st.integers(0, 7).map(lambda k: 2 * k + 1),
        stride=st.integers(1, 8),
        expansion=positive,
        se_ratio=st.none() | positive,
        act=st.none() | st.sampled_from(sorted(ACTIVATIONS)),
        skip=st.booleans(),
    )


@settings(max_examples=300, deadline=None)
@given(spec=_specs(), seed=st.integers(0, 2**16))
def test_random_specs_round_trip(spec, seed):
    text = spec.to_string()
    assert parse_block(text) == spec
    assert parse_block(text).to_string() == text
    # any token order parses to the same spec
    head, *tokens = text.split("_")
    random.Random(seed).shuffle(tokens)
    assert parse_block("_".join([head, *tokens])) == spec


@settings(max_examples=50, deadline=None)
@given(stages=st.lists(st.lists(_specs(), min_size=1, max_size=3), min_size=1, max_size=5))
def test_random_stage_lists_round_trip(stages):
    written = format_stages(stages)
    assert parse_stages(written) == tuple(tuple(s) for s in stages)


@pytest.mark.parametrize("text, message", [
    ("xx_r1_c16", r"unknown block type 'xx'"),
    ("", r"unknown block type ''"),
    ("ir_r2_k3_s2_e6", r"missing output channels"),
    ("ir_r2_k3_s2_c24", r"needs an expansion ratio"),
    ("ir_r2_k3_s2_e6_c24_r3", r"duplicate repeats in token 'r3'"),
    ("ds_r1_c16_relu_silu", r"duplicate act in token 'silu'"),
    ("ds_c16_noskip_noskip", r"duplicate skip in token 'noskip'"),
    ("ir_rx_e6_c24", r"unknown token 'rx'"),
    ("ir_r2x_e6_c24", r"repeats in token 'r2x' must be a whole number"),
    ("ir_r1.5_e6_c24", r"repeats in token 'r1.5' must be a whole number"),
    ("ir_r2_e6_c24_se0.2.5", r"se_ratio in token 'se0.2.5' must be a number"),
    ("ir_r2_e1e_c24", r"expansion in token 'e1e' must be a number"),
    ("ir_r2_einf_c24", r"unknown token 'einf'"),
    ("ir_r2_e-1_c24", r"expansion in token 'e-1' must be a number"),
    ("ir_r0_e6_c24", r"repeats in token 'r0' must not be zero"),
    ("ir_r1_e6_c0", r"out_chs in token 'c0' must not be zero"),
    ("ir_r1_e6_c8_se0", r"se_ratio in token 'se0' must not be zero"),
    ("ir_r1_s0_e6_c8", r"stride in token 's0' must not be zero"),
    ("ir_r1_k4_e6_c8", r"kernel in token 'k4' must be odd"),
    ("ds_r1_e6_c16", r"ds block takes no expansion"),
    ("ir_r1_e6_c8_swish", r"unknown token 'swish'"),
    ("ir_r1_e6_c8_x1", r"unknown token 'x1'"),
    ("ir_r1__e6_c8", r"empty token"),
    ("ir_r1_e6_c8_", r"empty token"),
])
def test_malformed_strings_name_the_bad_token(text, message):
    with pytest.raises(BlockStringError, match=message):
        parse_block(text)


def test_non_string_is_rejected():
    with pytest.raises(BlockStringError, match="must be a str"):
        parse_block(24)


@pytest.mark.parametrize("kwargs, message", [
    (dict(block="cn", out_chs=8), "unknown block type 'cn'"),
    (dict(block="ir", out_chs=8, repeats=0), "repeats must be a positive integer"),
    (dict(block="ir", out_chs=8, kernel=2), "kernel must be odd"),
    (dict(block="ir", out_chs=8.0), "out_chs must be a positive integer"),
    (dict(block="ds", out_chs=8, expansion=6), "ds block has no expansion"),
    (dict(block="ir", out_chs=8, se_ratio=0.0), "se_ratio must be a positive finite number"),
    (dict(block="ir", out_chs=8, expansion=float("nan")), "expansion must be a positive finite number"),
    (dict(block="ir", out_chs=8, act="tanh"), "unknown activation 'tanh'"),
])
def test_invalid_specs_are_rejected_when_built_directly(kwargs, message):
    with pytest.raises(BlockStringError, match=message):
        BlockSpec(**kwargs)


def test_stage_list_errors_say_where():
    with pytest.raises(BlockStringError, match=r"stage 1, block 0: 'ir_r2_k3_s2_e6'.*missing output channels"):
        parse_stages([["ds_r1_k3_s1_c16"], ["ir_r2_k3_s2_e6"]])
    with pytest.raises(BlockStringError, match="stage 0 must be a list of block strings"):
        parse_stages(["ds_r1_k3_s1_c16", "ir_r2_k3_s2_e6_c24"])
    with pytest.raises(BlockStringError, match="got one string"):
        parse_stages("ds_r1_k3_s1_c16")
    with pytest.raises(BlockStringError, match="stage 1 is empty"):
        parse_stages([["ds_r1_k3_s1_c16"], []])
    with pytest.raises(BlockStringError, match="no stages"):
        parse_stages([])


def test_specs_are_frozen_and_hashable():
    spec = parse_block("ir_r2_k3_s2_e6_c24_se0.25")
    with pytest.raises(AttributeError):
        spec.out_chs = 32
    assert len({spec, parse_block("ir_se0.25_r2_k3_s2_e6_c24")}) == 1


def test_a_custom_stage_list_builds_a_network():
    # the notation is also the search space: any valid stage list builds and runs
    arch = [["ds_r1_k3_s1_c16_relu"], ["ir_r2_k5_s2_e3_c24_se0.5"], ["ir_r1_k3_s2_e4_c40_hardswish_noskip"]]
    model = archzoo.create_model("efficientnet_b0", arch=arch).eval()
    assert format_stages(model.stage_specs) == arch
    assert model.feature_info.strides() == [2, 4, 8] and model.feature_info.channels() == [16, 24, 40]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
