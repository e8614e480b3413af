"""What is special about MobileNetV2 and EfficientNet: the generated B1-B7, the published parameter
and operation counts, one converter layout for torchvision and timm, and the blocks themselves."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

import archzoo
from archzoo.blockstring import parse_block, parse_stages
from archzoo.layers import DepthwiseSeparable, DropPath, InvertedResidual, SqueezeExcite
from archzoo.models.efficientnet import EFFICIENTNET_VARIANTS
from archzoo.profile import count_gflops, count_params

from helpers import build_reference, max_rel_diff, n_params, randomize_norms, sample_input

EFFICIENTNETS = [f"efficientnet_{k}" for k in EFFICIENTNET_VARIANTS]
TORCHVISION_NAMES = ["mobilenet_v2"] + EFFICIENTNETS


def _meta(build):
    with torch.device("meta"):
        return build()


# --- EfficientNet B1-B7: generated from B0 by compound scaling ---------------------------------

@pytest.mark.parametrize("key", list(EFFICIENTNET_VARIANTS))
def test_scaled_stages_match_torchvisions_table(key):
    from torchvision.models.efficientnet import _efficientnet_conf

    width, depth, _, _ = EFFICIENTNET_VARIANTS[key]
    theirs, _ = _efficientnet_conf(f"efficientnet_{key}", width_mult=width, depth_mult=depth)
    ours = _meta(lambda: archzoo.create_model(f"efficientnet_{key}")).stage_specs
    assert [(s[0].expansion, s[0].kernel, s[0].stride, s[0].out_chs, s[0].repeats) for s in ours] == [
        (c.expand_ratio, c.kernel, c.stride, c.out_channels, c.num_layers) for c in theirs]


def test_b7_is_the_published_architecture():
    # the official B7: stem 64, widths 32..640, repeats 4/7/7/10/10/13/4, head 2560
    model = _meta(lambda: archzoo.create_model("efficientnet_b7"))
    assert model.stem.conv.out_channels == 64 and model.num_features == 2560
    assert [s[0].out_chs for s in model.stage_specs] == [32, 48, 80, 160, 224, 384, 640]
    assert [len(stage) for stage in model.stages] == [4, 7, 7, 10, 10, 13, 4]


@pytest.mark.parametrize("name", EFFICIENTNETS)
def test_norms_dropout_and_stochastic_depth_follow_torchvision(name):
    ours = _meta(lambda: archzoo.create_model(name))
    ref = _meta(lambda: torchvision.models.get_model(name))
    norms = lambda m: [(n.eps, n.momentum) for n in m.modules() if isinstance(n, nn.BatchNorm2d)]  # noqa: E731
    assert norms(ours) == norms(ref)
    assert ours.head.drop.p == ref.classifier[0].p == EFFICIENTNET_VARIANTS[name[-2:]][3]
    # block i of n drops its branch with probability 0.2 * i / n, where the block has a shortcut
    ref_blocks = [b for stage in ref.features[1:-1] for b in stage]
    our_blocks = [b for stage in ours.stages for b in stage]
    assert [b.use_res_connect for b in ref_blocks] == [b.has_skip for b in our_blocks]
    want = [b.stochastic_depth.p for b in ref_blocks if b.use_res_connect]
    got = [b.drop_path.p for b in our_blocks if b.has_skip]
    assert got == pytest.approx(want, rel=0, abs=1e-12)


# Tan & Le 2019: the resolution of each scaled network (section 5.2 and the authors' released
# efficientnet_params table), typed here from the paper, not from our variant table
PAPER_RESOLUTIONS = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528, "b7": 600}


def test_cards_carry_the_paper_resolutions():
    assert sorted(EFFICIENTNET_VARIANTS) == sorted(PAPER_RESOLUTIONS)
    for key, resolution in PAPER_RESOLUTIONS.items():
        card = archzoo.model_card(f"efficientnet_{key}")
        assert card.input_size == (3, resolution, resolution) and card.min_input_size == (3, 32, 32)
        assert "compound_scaling" in card.tricks


# --- published counts ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_params_equal_torchvisions_published_count(name):
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
    assert count_params(_meta(lambda: archzoo.create_model(name))) == published


# Tan & Le 2019, Table 2 (millions). B2 is listed as 9.2M; the network the paper's own code builds
# (and torchvision, timm) has 9.11M.
@pytest.mark.parametrize("key, millions, digits", [
    ("b0", 5.3, 1), ("b1", 7.8, 1), ("b2", 9.1, 1), ("b3", 12, 0), ("b4", 19, 0), ("b5", 30, 0), ("b6", 43, 0), ("b7", 66, 0),
])
def test_efficientnet_params_match_the_paper(key, millions, digits):
    assert round(count_params(_meta(lambda: archzoo.create_model(f"efficientnet_{key}"))) / 1e6, digits) == millions


def test_efficientnet_b0_flops_match_the_paper():
    # Table 2: 0.39B FLOPs (multiply-adds) at 224x224
    assert round(count_gflops(_meta(lambda: archzoo.create_model("efficientnet_b0")), (3, 224, 224)), 2) == 0.39


# The MobileNetV2 release table (TF-slim README): millions of parameters (without the batch-norm
# scales and shifts) and millions of multiply-adds at 224x224 (the table rounds them loosely). The paper's Table 4 lists 3.4M for
# width 1.0 and 6.9M for width 1.4; the released 1.4 network has 6.06M.
@pytest.mark.parametrize("name, params, macs", [
    ("mobilenet_v2", 3.47, 300), ("mobilenet_v2_140", 6.06, 582), ("mobilenet_v2_075", 2.61, 209),
    ("mobilenet_v2_050", 1.95, 97), ("mobilenet_v2_035", 1.66, 59),
])
def test_mobilenet_v2_counts_match_the_release_table(name, params, macs):
    model = _meta(lambda: archzoo.create_model(name))
    norms = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert round((count_params(model) - norms) / 1e6, 2) == params
    assert count_gflops(model, (3, 224, 224)) * 1000 == pytest.approx(macs, rel=0.01)  # width 1.0: 300.8M


def test_mobilenet_v2_head_never_shrinks():
    widths = {n: _meta(lambda n=n: archzoo.create_model(n)).num_features for n in archzoo.list_models("mobilenet_v2*")}
    assert widths == {"mobilenet_v2": 1280, "mobilenet_v2_035": 1280, "mobilenet_v2_050": 1280,
                      "mobilenet_v2_075": 1280, "mobilenet_v2_140": 1792}


# --- one converter layout for torchvision and timm -------------------------------------------------

@pytest.mark.parametrize("name, timm_name", [("mobilenet_v2", "mobilenetv2_100"), ("efficientnet_b0", "efficientnet_b0")])
def test_timm_weights_convert_to_the_same_network(name, timm_name):
    torch.manual_seed(0)
    reference = randomize_norms(build_reference(f"timm:{timm_name}")).eval()
    model = archzoo.create_model(name).eval()
    model.load_state_dict(archzoo.convert_weights(name, reference.state_dict(), "timm"))
    assert n_params(model) == n_params(reference)
    x = sample_input(archzoo.model_card(name), size=64)
    extractor = archzoo.create_model(name, features_only=True).eval()
    extractor.model.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        assert max_rel_diff(reference(x), model(x)) <= 1e-5
        theirs = reference.forward_intermediates(x, intermediates_only=True)
        ours = extractor(x)
    assert [f.shape for f in theirs] == [f.shape for f in ours]
    assert all(max_rel_diff(a, b) <= 1e-5 for a, b in zip(theirs, ours))


def test_load_weights_recognises_either_layout(tmp_path):
    torch.manual_seed(0)
    x = sample_input(archzoo.model_card("mobilenet_v2"), size=64)
    for ref in ("torchvision:mobilenet_v2", "timm:mobilenetv2_100"):
        reference = randomize_norms(build_reference(ref)).eval()
        path = tmp_path / (ref.split(":")[1] + ".pth")
        torch.save(reference.state_dict(), path)
        model = archzoo.create_model("mobilenet_v2", weights=path).eval()
        with torch.no_grad():
            assert max_rel_diff(reference(x), model(x)) <= 1e-5


# --- the blocks ------------------------------------------------------------------------------------

def _torchvision_twin(block: nn.Module, in_chs: int, out_chs: int, stride: int, expansion: int) -> nn.Module:
    """torchvision's MobileNetV2 block (expand, depthwise, linear projection, shortcut when the
    shape is kept) holding ``block``'s weights: an independent implementation of the same block."""
    from torchvision.models.mobilenetv2 import InvertedResidual as TorchvisionIR

    twin = TorchvisionIR(in_chs, out_chs, stride, expansion)
    ours, theirs = list(block.state_dict().values()), twin.state_dict()
    assert [t.shape for t in ours] == [t.shape for t in theirs.values()]
    twin.load_state_dict(dict(zip(theirs, ours)))
    return twin


@pytest.mark.parametrize("out_chs, stride", [(24, 1), (24, 2), (32, 1)])
def test_inverted_residual_matches_torchvisions_block(out_chs, stride):
    torch.manual_seed(0)
    x = torch.randn(2, 24, 8, 8)
    block = randomize_norms(InvertedResidual(24, out_chs, expansion=6, stride=stride)).eval()
    twin = _torchvision_twin(block, 24, out_chs, stride, 6).eval()
    assert block.expand.conv.out_channels == 144
    assert block.has_skip == twin.use_res_connect == (stride == 1 and out_chs == 24)
    with torch.no_grad():
        torch.testing.assert_close(block(x), twin(x))
        if block.has_skip:  # skip=False removes exactly the shortcut
            noskip = InvertedResidual(24, 24, expansion=6, skip=False).eval()
            noskip.load_state_dict(block.state_dict())
            assert not noskip.has_skip
            torch.testing.assert_close(noskip(x), twin(x) - x)


def test_depthwise_separable_block():
    ds = DepthwiseSeparable(16, 16, se_ratio=0.25, act_layer=nn.SiLU)
    assert ds.has_skip and ds.depthwise.conv.groups == 16 and ds.se.fc1.out_channels == 4


def test_squeeze_width_is_a_ratio_of_the_block_input():
    # MBConv's SE sees the expanded features but its width is 1/4 of the block's input width
    block = InvertedResidual(40, 80, expansion=6, se_ratio=0.25, act_layer=nn.SiLU)
    assert isinstance(block.se, SqueezeExcite)
    assert (block.se.fc1.in_channels, block.se.fc1.out_channels) == (240, 10)
    assert isinstance(block.se.act, nn.SiLU)


def test_stochastic_depth_drops_whole_branches_in_training_only():
    """Huang et al. 2016 with inverted scaling: in training each sample's branch is dropped with
    probability p, or kept and scaled by 1/(1-p); in eval the block is the plain residual block."""
    torch.manual_seed(0)
    block = InvertedResidual(16, 16, expansion=2, drop_path=0.5)
    assert isinstance(block.drop_path, DropPath)
    twin = _torchvision_twin(block, 16, 16, 1, 2)  # the same block without stochastic depth
    x = torch.randn(64, 16, 4, 4)
    block.train(), twin.train()
    with torch.no_grad():
        y, plain = block(x), twin(x)  # batch-statistics norms: the same branch output in both
    dropped = [torch.equal(y[i], x[i]) for i in range(len(x))]
    assert 10 < sum(dropped) < 54  # about half the samples skip the branch entirely
    kept = [i for i in range(len(x)) if not dropped[i]]
    torch.testing.assert_close(y[kept], x[kept] + (plain[kept] - x[kept]) / 0.5)
    block.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), twin(x))


def test_block_act_override_and_noskip_from_the_string():
    stages = parse_stages([["ir_r2_k3_s1_e6_c16_hardswish_noskip"]])
    model = archzoo.create_model("mobilenet_v2", arch=[["ir_r2_k3_s1_e6_c16_hardswish_noskip"], ["ds_r1_k3_s2_c24"]])
    block = model.stages[0][1]
    assert model.stage_specs[0] == stages[0] and not block.has_skip
    assert isinstance(block.depthwise.act, nn.Hardswish) and isinstance(model.stem.act, nn.ReLU6)
    assert parse_block("ir_r2_k3_s1_e6_c16_hardswish_noskip").to_string() == "ir_r2_k3_s1_e6_c16_hardswish_noskip"
