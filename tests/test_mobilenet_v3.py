"""What MobileNetV3 adds (Howard et al. 2019, arXiv:1905.02244): hard-swish from the middle of the
network on, hard-sigmoid squeeze-excitation after the depthwise conv sized from the expanded width,
the efficient last stage, and torchvision's dilated and reduced-tail variants for dense prediction.
Output parity, parameter counts and GFLOPs are in the generic tests (test_parity,
test_published_numbers)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.layers import SE_STYLES, InvertedResidual, SqueezeExcite
from archzoo.layers.squeeze_excite import SqueezeExciteStyle

from helpers import converted, max_rel_diff

TOL = 1e-5


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return archzoo.create_model(name, **kwargs)


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [block for stage in model.stages for block in stage]


# the NL and SE columns of the paper's Tables 1 and 2, block by block
PAPER = {
    "mobilenet_v3_large": ("RE" * 6 + "HS" * 9, "--" * 3 + "SE" * 3 + "--" * 4 + "SE" * 5),
    "mobilenet_v3_small": ("RE" * 3 + "HS" * 8, "SE" + "--" * 2 + "SE" * 8),
}


@pytest.mark.parametrize("name", PAPER)
def test_activations_and_se_follow_the_paper_tables(name):
    model = _meta(name)
    nl, se = PAPER[name]
    acts = ["RE" if isinstance(b.depthwise.act, nn.ReLU) else "HS" for b in _blocks(model)]
    assert "".join(acts) == nl
    assert "".join("SE" if isinstance(b.se, SqueezeExcite) else "--" for b in _blocks(model)) == se
    # hard-swish everywhere outside the early blocks: stem, last conv, the head's hidden layer
    assert all(isinstance(m, nn.Hardswish) for m in (model.stem.act, model.conv_head.act, model.head.pre_logits.act1))


def test_se_gates_the_depthwise_output_with_a_hard_sigmoid_of_a_rounded_quarter():
    """SE sits between depthwise and projection, over the expanded width; its squeeze is a quarter
    of that width rounded to a multiple of 8, with ReLU inside even in a hard-swish block."""
    torch.manual_seed(0)
    block = InvertedResidual(40, 40, 3, kernel_size=5, se_ratio=0.25, act_layer=nn.Hardswish,
                             se_style=SE_STYLES["mobilenet_v3"]).eval()
    assert (block.se.fc1.in_channels, block.se.fc1.out_channels) == (120, 32)  # 120 / 4 = 30 -> 32
    assert isinstance(block.se.act, nn.ReLU) and isinstance(block.se.gate, nn.Hardsigmoid)
    x = torch.randn(2, 40, 9, 9)
    with torch.no_grad():
        d = block.depthwise(block.expand(x))
        s = block.se.fc2(torch.relu(block.se.fc1(d.mean((2, 3), keepdim=True))))
        want = x + block.project(d * torch.clamp(s + 3, 0, 6) / 6)  # hard sigmoid = relu6(x + 3) / 6
        torch.testing.assert_close(block(x), want)
    # MnasNet's style (EfficientNet) is unchanged: int(ratio * input width), the block's activation, sigmoid
    mnas = InvertedResidual(40, 40, 3, se_ratio=0.25, act_layer=nn.SiLU)
    assert (mnas.se.fc1.out_channels, type(mnas.se.act), type(mnas.se.gate)) == (10, nn.SiLU, nn.Sigmoid)
    assert SqueezeExciteStyle().squeeze_width(0.25, 120, 2) == 1


@pytest.mark.parametrize("name", PAPER)
def test_squeeze_widths_equal_torchvisions(name):
    import torchvision

    with torch.device("meta"):
        reference = torchvision.models.get_model(name)
    theirs = [m.fc1.out_channels for m in reference.modules() if type(m).__name__ == "SqueezeExcitation"]
    assert [b.se.fc1.out_channels for b in _blocks(_meta(name)) if isinstance(b.se, SqueezeExcite)] == theirs


def test_efficient_last_stage_pools_before_the_widest_layer():
    """Figure 5: the 1x1 to 1280 runs on the pooled vector: its cost does not grow with the map."""
    model = archzoo.create_model("mobilenet_v3_large").eval()
    assert model.num_features == 960 and model.head_hidden_size == 1280
    assert model.head.pre_logits.fc1.in_features == 960 and not any(
        isinstance(m, nn.BatchNorm2d) for m in model.head.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (1, 1280)
        torch.testing.assert_close(pooled, model.head.pre_logits(feats.mean((2, 3))))


def test_output_stride_16_equals_torchvisions_dilated_model():
    """torchvision's ``dilated=True``: the last stage's blocks all dilate by 2, the first included."""
    reference, model = converted("mobilenet_v3_large", ref_kwargs=dict(dilated=True), output_stride=16)
    assert [b.depthwise.conv.dilation[0] for b in model.stages[-1]] == [2, 2, 2]
    assert model.feature_info.strides()[-2:] == [16, 16]
    x = torch.randn(1, 3, 48, 48)  # 3x3 maps at stride 16: the dilated 5x5 taps still reach inside
    with torch.no_grad():
        assert max_rel_diff(reference(x), model(x)) <= TOL
        ours = archzoo.features_from(model)(x)
        torch.testing.assert_close(ours[-1], reference.features(x), rtol=1e-4, atol=1e-5)
    assert [48 // m.shape[-1] for m in ours] == model.feature_info.strides()
    # Small as well; and timm's rule instead: the block that gives up its stride keeps the previous dilation
    for name in PAPER:
        for dilate_strided, dilations in ((True, [2, 2, 2]), (False, [1, 2, 2])):
            last = _meta(name, output_stride=16, dilate_strided=dilate_strided).stages[-1]
            assert [b.depthwise.conv.dilation[0] for b in last] == dilations
            assert [b.depthwise.conv.stride[0] for b in last] == [1, 1, 1]


def test_ssdlite_maps_are_module_outputs_of_the_reduced_tail_backbone():
    """SSDLite (paper section 6.3; torchvision's ssdlite320_mobilenet_v3_large) reads the expansion 1x1
    conv of the first stride-32 block (672 channels at stride 16) and the last conv of the backbone
    with its last stage halved (``reduced_tail``, 480 channels): both are module outputs, so a
    detector chains modules, no hooks."""
    from torchvision.models.feature_extraction import create_feature_extractor

    reference, model = converted("mobilenet_v3_large", ref_kwargs=dict(reduced_tail=True), reduced_tail=True)
    first32 = model.stages[5][0]
    assert not first32.has_skip and first32.expand.out_chs == 672 and model.feature_info.channels()[-1] == 480
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert max_rel_diff(reference(x), model(x)) <= TOL
        c4 = first32.expand(model.stages[:5](model.stem(x)))
        last = model.conv_head(model.stages[5][1:](first32.project(first32.se(first32.depthwise(c4)))))
        want = create_feature_extractor(reference, ["features.13.block.0", "features.16"])(x)
    assert c4.shape == (1, 672, 4, 2) and last.shape == (1, 480, 2, 1)
    assert max_rel_diff(want["features.13.block.0"], c4) <= TOL
    assert max_rel_diff(want["features.16"], last) <= TOL
