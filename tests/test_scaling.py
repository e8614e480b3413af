"""Compound scaling (Tan & Le 2019, arXiv:1905.11946) as a tool: archzoo.scaling and `archzoo scale`.

How B1..B7 are reproduced, honestly: the paper defines depth ``alpha**phi``, width ``beta**phi``,
resolution ``gamma**phi`` (1.2, 1.1, 1.15), but the released B1..B7 use hand-rounded
coefficients — (width, depth, resolution) = (1.0, 1.1, 240), (1.1, 1.2, 260), (1.2, 1.4, 300),
(1.4, 1.8, 380), (1.6, 2.2, 456), (1.8, 2.6, 528), (2.0, 3.1, 600) — that no single (alpha, beta,
gamma) gives. The tool therefore has the published table as the preset ``"efficientnet"`` (phi =
k gives Bk); the formula is the default. By comparison the formula at phi = 1 is (1.1, 1.2, 258):
B2's width and depth (so B2's exact parameter count), not B1's; at phi = 7 it is (1.95, 3.58, 596),
68.7M parameters against B7's 66.3M. docs/scaling.md has the whole table.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import archzoo
from archzoo.blockstring import format_stages, parse_stages
from archzoo.cli.main import main
from archzoo.scaling import coefficient_grid, compound_scale, measure, search_coefficients, unregister_scaled
from archzoo.validate import UserError


@pytest.fixture
def registered():
    """Names the test registers, removed afterwards so other tests see the usual registry."""
    names = []
    yield names
    for name in names:
        if name in archzoo.list_models():
            unregister_scaled(name)


def _shapes(name: str) -> dict:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in archzoo.create_model(name).state_dict().items()}


@pytest.mark.parametrize("k", range(1, 8))
def test_preset_rebuilds_efficientnet_b1_to_b7_from_b0(k, registered):
    result = compound_scale("efficientnet_b0", k, preset="efficientnet", name=f"test_scaled_b{k}")
    registered.append(result.name)
    ours, theirs = _shapes(result.name), _shapes(f"efficientnet_b{k}")
    assert ours == theirs  # same keys, same shapes, hence the same parameter count
    assert measure(result)["params"] == archzoo.profile.model_stats(f"efficientnet_b{k}")["params"]
    assert (3, result.resolution, result.resolution) == archzoo.model_card(f"efficientnet_b{k}").input_size
    with torch.device("meta"):
        model = archzoo.create_model(result.name)
    assert format_stages(model.stage_specs) == result.stages  # the printed block strings are what is built


def test_formula_differs_from_the_published_table():
    phi1 = compound_scale("efficientnet_b0", 1, register=False)
    assert (phi1.width, phi1.depth, phi1.resolution) == (pytest.approx(1.1), pytest.approx(1.2), 258)
    b2 = archzoo.profile.model_stats("efficientnet_b2")["params"]
    assert measure(phi1)["params"] == b2 != archzoo.profile.model_stats("efficientnet_b1")["params"]
    phi7 = compound_scale("efficientnet_b0", 7, register=False)
    assert phi7.resolution == 596 and phi7.depth == pytest.approx(1.2**7)
    assert measure(phi7)["params"] > archzoo.profile.model_stats("efficientnet_b7")["params"]


def test_scaled_widths_and_repeats_follow_efficientnet_rounding():
    base = parse_stages(archzoo.model_card("efficientnet_b0").kwargs["arch"])
    result = compound_scale("efficientnet_b0", 2, register=False)  # depth 1.44, width 1.21
    scaled = parse_stages(result.stages)
    for stage, stage0 in zip(scaled, base):
        (spec,), (spec0,) = stage, stage0
        assert spec.out_chs % 8 == 0 and spec.out_chs >= 0.9 * spec0.out_chs * 1.21
        assert spec.repeats == math.ceil(spec0.repeats * 1.44)
    assert result.flops_factor == pytest.approx((1.2 * 1.1**2 * 1.15**2) ** 2)


def test_scaling_composes_with_the_base_multipliers():
    """Scaling B1 multiplies B1's multipliers (the scaled table is B0's, rounded once)."""
    result = compound_scale("efficientnet_b1", 1, register=False)
    assert result.width_mult == pytest.approx(1.0 * 1.1) and result.depth_mult == pytest.approx(1.1 * 1.2)
    assert result.resolution == round(240 * 1.15)


def test_registered_result_builds_and_runs(registered):
    result = compound_scale("mobilenet_v2_035", 1)
    registered.append(result.name)
    assert result.name == "mobilenet_v2_035_phi1" and result.name in archzoo.list_models()
    assert compound_scale("mobilenet_v2_035", 1).name == result.name  # the same network again: allowed
    model = archzoo.create_model(result.name, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert archzoo.model_card(result.name).input_size == (3, 258, 258)
    assert archzoo.model_card(result.name).reference is None


@pytest.mark.parametrize("call,word", [
    (lambda: compound_scale("resnet50", 1, register=False), "base"),
    (lambda: compound_scale("no_such_model", 1, register=False), "base"),
    (lambda: compound_scale("efficientnet_b0", -1, register=False), "phi"),
    (lambda: compound_scale("efficientnet_b0", float("nan"), register=False), "phi"),
    (lambda: compound_scale("efficientnet_b0", 1, alpha=0.9, register=False), "alpha"),
    (lambda: compound_scale("efficientnet_b0", 8, preset="efficientnet", register=False), "phi"),
    (lambda: compound_scale("efficientnet_b0", 1.5, preset="efficientnet", register=False), "phi"),
    (lambda: compound_scale("efficientnet_b0", 1, preset="nope", register=False), "preset"),
    (lambda: compound_scale("efficientnet_b0", 1, name="efficientnet_b1"), "name"),
    (lambda: compound_scale("efficientnet_b0", 1, name="has space", register=False), "name"),
])
def test_bad_input_is_a_user_error(call, word):
    with pytest.raises(UserError, match=word):
        call()


def test_cli_scale_json(capsys, registered):
    registered.append("cli_scaled")
    assert main(["scale", "efficientnet_b0", "--phi", "1", "--name", "cli_scaled", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "cli_scaled" and out["resolution"] == 258
    assert out["params"] == archzoo.profile.model_stats("efficientnet_b2")["params"]
    assert out["gflops"] == pytest.approx(archzoo.profile.model_stats("cli_scaled")["gflops"])
    assert main(["scale", "resnet50", "--phi", "1"]) == 2
    assert "not a block-string network" in capsys.readouterr().err


def test_coefficient_grid_keeps_the_constraint():
    grid = coefficient_grid([1.0, 1.1, 1.2], [1.0, 1.1], [1.0, 1.15, 1.2], tolerance=0.05)
    assert (1.2, 1.1, 1.15) in grid  # the paper's: 1.2 * 1.1^2 * 1.15^2 = 1.92
    assert all(abs(a * b * b * g * g - 2) <= 0.1 for a, b, g in grid)
    assert (1.2, 1.1, 1.2) in grid  # 2.09: within 5%
    assert (1.0, 1.0, 1.0) not in grid and (1.2, 1.1, 1.0) not in grid  # 1.0 and 1.45: too far
    with pytest.raises(UserError, match="alphas"):
        coefficient_grid([0.5], [1.0], [1.0])



def test_search_coefficients_trains_each_candidate_on_the_proxy(one_thread):
    """A CI-sized grid search: the base and one candidate, one epoch on 64 digits."""
    rows = search_coefficients("mobilenet_v2_035", [(1.2, 1.1, 1.2)], epochs=1, train_limit=64, val_limit=32,
                               batch_size=32)
    assert len(rows) == 2
    base = next(r for r in rows if r["baseline"])
    cand = next(r for r in rows if not r["baseline"])
    assert base["image_size"] == 32 and cand["image_size"] == round(32 * 1.2)
    assert cand["flops_factor"] == pytest.approx(1.2 * 1.1**2 * 1.2**2)
    assert cand["params"] > base["params"] and cand["gflops"] > base["gflops"]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in rows)
    assert rows[0]["val_accuracy"] >= rows[1]["val_accuracy"]  # best first
