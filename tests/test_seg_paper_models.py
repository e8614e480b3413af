"""FCN (arXiv:1411.4038), SegNet (arXiv:1511.00561) and FC-DenseNet (arXiv:1611.09326): parameter
counts derived by hand from the papers' layer tables, logits at the input's size (shapes on the meta
device, so many sizes cost nothing), FCN's bilinear deconvolutions and convolutionalised classifier,
SegNet's unpooling with the encoder's indices, and gradients reaching the first convolution."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archzoo
from archzoo.segmentation.fc_densenet import FC_DENSENET_BLOCKS, FCDenseNet
from archzoo.segmentation.fcn import FCN, bilinear_deconv

FCN_NAMES = {0: "fcn32s_vgg16", 1: "fcn16s_vgg16", 2: "fcn8s_vgg16"}
SIZES = [(32, 32), (33, 47), (75, 100), (161, 97)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@functools.cache
def on_meta(name: str, caffe_padding: bool | None = None) -> nn.Module:
    """Built once on the meta device: shapes without memory or arithmetic."""
    kwargs = {} if caffe_padding is None else {"caffe_padding": caffe_padding}
    with torch.device("meta"):
        return archzoo.create_model(name, **kwargs).eval()


def meta_out(model: nn.Module, h: int, w: int) -> torch.Size:
    with torch.no_grad():
        return model(torch.empty(2, 3, h, w, device="meta")).shape


# --- counts by hand -----------------------------------------------------------------------------

def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


# VGG-16 (configuration D of the VGG paper's Table 1): the 13 3x3 convolutions, (in, out)
VGG16 = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def fcn_params(skips: int, k: int = 21, final_upsampling: bool = True) -> int:
    """VGG-16's convolutions, fc6 (7x7, 4096), fc7 (1x1, 4096), score_fr, per skip a 1x1 scorer
    (pool4: 512, pool3: 256 channels) and a bias-free 4x4 deconvolution, and the final bias-free
    2f x 2f deconvolution (f = 32, 16, 8)."""
    n = sum(conv(a, b, 3) for a, b in VGG16) + conv(512, 4096, 7) + conv(4096, 4096, 1) + conv(4096, k, 1)
    for width in (512, 256)[:skips]:
        n += conv(width, k, 1) + conv(k, k, 4, bias=False)
    f = 32 >> skips
    return n + (conv(k, k, 2 * f, bias=False) if final_upsampling else 0)


@pytest.mark.parametrize("skips", [0, 1, 2])
def test_fcn_parameters_match_the_layer_shapes_and_the_papers_134m(skips):
    model = on_meta(FCN_NAMES[skips])
    assert n_params(model) == fcn_params(skips)
    # Table 1: FCN-VGG16 has 134M parameters; the paper keeps the final upsampling fixed (bilinear)
    assert round(fcn_params(skips, final_upsampling=False) / 1e6) == 134
    if skips == 2:  # FCN-8s with every weight counted, as in the Caffe model: 134.49M
        assert fcn_params(2) == 134_489_759


def segnet_params(k: int = 11, running_stats: bool = False) -> int:
    """The encoder's 13 conv + batch norm layers, the decoder's mirrors of all but conv1_1 (input
    and output swapped, each with batch norm), and the 3x3 classifier from 64 channels."""
    per_bn = 4 if running_stats else 2
    encoder = sum(conv(a, b, 3) + per_bn * b for a, b in VGG16)
    decoder = sum(conv(b, a, 3) + per_bn * a for a, b in VGG16[1:])
    return encoder + decoder + conv(64, k, 3)


def test_segnet_parameters_match_table_6():
    model = on_meta("segnet_vgg16")
    assert n_params(model) == segnet_params() == 29_449_355
    # the paper's 29.5M (Table 6): within 0.2%; with batch norm's running statistics counted, 29.47M
    assert abs(segnet_params() - 29.5e6) / 29.5e6 < 0.002
    assert round(segnet_params(running_stats=True) / 1e5) == 295


def tiramisu_params(blocks, growth: int, k: int = 11, stem: int = 48, authors_biases: bool = False,
                    running_stats: bool = False) -> int:
    """FC-DenseNet's parameters from its block sizes (Table 2): stem 3x3 conv, dense layers
    (BN + 3x3 conv to ``growth``), transitions down (BN + 1x1 conv), transitions up (3x3 transposed
    conv of the previous block's new maps), 1x1 classifier. Ours: bias-free dense layers and
    transitions down; ``authors_biases``: as the Lasagne code; ``running_stats``: count BN's too."""
    per_bn, bias = (4 if running_stats else 2), authors_biases
    levels = len(blocks) // 2

    def dense(m: int, layers: int) -> tuple[int, int]:
        n = 0
        for _ in range(layers):
            n += per_bn * m + conv(m, growth, 3, bias)
            m += growth
        return n, m

    total, m, skips = conv(3, stem, 3), stem, []
    for layers in blocks[:levels]:
        n, m = dense(m, layers)
        skips.append(m)
        total += n + per_bn * m + conv(m, m, 1, bias)
    n, m = dense(m, blocks[levels])
    total, new = total + n, blocks[levels] * growth
    for layers, skip in zip(blocks[levels + 1:], reversed(skips)):
        n, m = dense(new + skip, layers)
        total += conv(new, new, 3) + n
        new = layers * growth
    return total + conv(m, k, 1)


@pytest.mark.parametrize("depth", [56, 67, 103])
def test_fc_densenet_parameters_and_depth_from_table_2(depth):
    blocks, growth = FC_DENSENET_BLOCKS[depth]
    model = on_meta(f"fc_densenet{depth}")
    assert n_params(model) == tiramisu_params(blocks, growth)
    # the name counts the convolutions: stem, dense layers, transitions down and up, classifier
    assert sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules()) == depth
    # the paper's 1.5M / 3.5M / 9.4M: 3.5M and 9.4M are the counts with the authors' biases and BN's
    # running statistics (Lasagne's count_params); 56 gives 1.4M however counted (see the module doc)
    paper = tiramisu_params(blocks, growth, authors_biases=True, running_stats=True)
    assert round(paper / 1e5) == {56: 14, 67: 35, 103: 94}[depth]
    assert round(tiramisu_params(blocks, growth) / 1e5) == {56: 14, 67: 35, 103: 93}[depth]


def test_fc_densenet103_widths_are_table_2s():
    model = on_meta("fc_densenet103")
    # m after each dense block: down path, bottleneck (its output; only its 240 new maps go up), up path
    assert [b.out_chs for b in model.down_blocks] == [112, 192, 304, 464, 656]
    assert model.bottleneck.out_chs == 896
    assert [b.out_chs for b in model.up_blocks] == [1088, 816, 576, 384, 256]
    assert [up.conv.in_channels for up in model.transitions_up] == [240, 192, 160, 112, 80]


# --- logits at the input's size -----------------------------------------------------------------

@pytest.mark.parametrize("caffe_padding", [False, True])
@pytest.mark.parametrize("skips", [0, 1, 2])
def test_fcn_output_is_the_input_size(skips, caffe_padding):
    model = on_meta(FCN_NAMES[skips], caffe_padding)
    for h, w in SIZES + [(500, 500), (1, 1)]:
        assert meta_out(model, h, w) == (2, 21, h, w)


@pytest.mark.parametrize("name, sizes", [("segnet_vgg16", SIZES), ("fc_densenet56", SIZES),
                                         ("fc_densenet103", [(45, 61)])])  # meta ops cost ~1 ms each here
def test_segnet_and_fc_densenet_outputs_are_the_input_size(name, sizes):
    model = on_meta(name)
    for h, w in sizes:
        assert meta_out(model, h, w) == (2, 11, h, w)


def test_the_caffe_geometry_is_the_papers():
    model = on_meta("fcn8s_vgg16", True)
    assert model.encoder[0].conv1.conv.padding == (100, 100) and model.fc6.conv.padding == (0, 0)
    assert model.offsets == (5, 9, 31)
    assert [m.padding for m in (model.upscore2, model.upscore_pool4, model.upscore)] == [(0, 0)] * 3
    assert on_meta("fcn32s_vgg16", True).offsets[-1] == 19


# --- FCN: bilinear deconvolutions, zero scorers, convolutionalisation ---------------------------

@pytest.fixture(scope="module")
def fcn8s():
    torch.manual_seed(0)
    return archzoo.create_model("fcn8s_vgg16", num_classes=5, fc_width=64)


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_deconvolutions_start_as_bilinear_interpolation(factor):
    up = bilinear_deconv(3, factor, factor // 2)
    x = torch.randn(2, 3, 5, 4)
    with torch.no_grad():
        y = up(x)
    want = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    assert y.shape == want.shape == (2, 3, 5 * factor, 4 * factor)
    # equal away from the border (F.interpolate repeats the edge there, the deconvolution sees zeros)
    inner = (..., slice(factor // 2, -(factor // 2)), slice(factor // 2, -(factor // 2)))
    torch.testing.assert_close(y[inner], want[inner], rtol=0, atol=1e-5)
    off_diagonal = up.weight * (1 - torch.eye(3))[:, :, None, None]
    assert up.weight.requires_grad and not off_diagonal.any()  # learnable; each class from itself


def test_fcn_deconvolutions_are_built_bilinear(fcn8s):
    for name, factor in (("upscore2", 2), ("upscore_pool4", 2), ("upscore", 8)):
        module = getattr(fcn8s, name)
        assert module.stride == (factor, factor) and module.padding == (factor // 2, factor // 2)
        torch.testing.assert_close(module.weight, bilinear_deconv(5, factor, 0).weight, rtol=0, atol=0)


def test_fcn_scorers_start_at_zero_and_gradients_reach_the_first_conv(fcn8s):
    model = copy.deepcopy(fcn8s).train()
    first = model.encoder[0].conv1.conv
    x = torch.randn(1, 3, 30, 45)  # not a multiple of 32: padded, then cropped back
    out = model(x)
    assert out.shape == (1, 5, 30, 45) and not out.any()  # zero-initialised scorers (section 4.3)
    out.logsumexp(1).mean().backward()
    assert model.score_fr.weight.grad.abs().sum() > 0 and model.score_pool3.weight.grad.abs().sum() > 0
    assert not first.weight.grad.any()  # nothing flows below a zero scorer yet
    model.zero_grad()
    for scorer in (model.score_fr, model.score_pool4, model.score_pool3):  # as after a few updates
        nn.init.normal_(scorer.weight, std=0.01)
    out = model(x)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    out.logsumexp(1).mean().backward()
    assert torch.isfinite(first.weight.grad).all() and first.weight.grad.abs().sum() > 0


def test_fcn_convolutionalises_a_vgg_classifier(fcn8s):
    vgg = archzoo.create_model("vgg16", hidden=(64, 64))
    model = copy.deepcopy(fcn8s).eval()
    model.init_from_classifier(vgg)
    torch.testing.assert_close(model.encoder[4].conv3.conv.weight, vgg.stages[4].conv3.conv.weight, rtol=0, atol=0)
    pool5 = torch.randn(2, 512, 7, 7)
    with torch.no_grad():
        fc6 = model.fc6.conv(pool5)[..., 3, 3]  # the centre cell sees the whole 7x7 window
        torch.testing.assert_close(fc6, vgg.head.pre_logits.fc1(pool5.flatten(1)), rtol=1e-4, atol=1e-5)
        h = torch.randn(2, 64)
        torch.testing.assert_close(model.fc7.conv(h[..., None, None])[..., 0, 0], vgg.head.pre_logits.fc2(h),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="fc_width"):
        model.init_from_classifier(archzoo.create_model("vgg16", hidden=(32, 32)))
    with pytest.raises(ValueError, match="backbone='vgg11'"):
        model.init_from_classifier(archzoo.create_model("vgg11", hidden=(64, 64)))


def test_fcn_refuses_bad_arguments():
    with pytest.raises(ValueError, match="skips"):
        FCN(skips=3)
    with pytest.raises(ValueError, match="backbone"):
        FCN(backbone="resnet50")
    with pytest.raises(ValueError, match="blocks"):
        FCDenseNet(blocks=(4, 4))


# --- SegNet: the decoder unpools with the encoder's indices -------------------------------------

@pytest.fixture(scope="module")
def segnet():
    torch.manual_seed(0)
    return archzoo.create_model("segnet_vgg16")


def test_segnet_unpools_to_where_the_maxima_were(segnet):
    model = segnet.eval()
    seen = {}
    model.encoder[0].register_forward_hook(lambda m, i, o: seen.setdefault("conv1_2", o))
    model.decoder[3].register_forward_hook(lambda m, i, o: seen.setdefault("decoded", o))
    model.decoder[4].register_forward_pre_hook(lambda m, i: seen.setdefault("unpooled", i[0]))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 32, 32))
    finally:
        for m in (model.encoder[0], model.decoder[3], model.decoder[4]):
            m._forward_hooks.clear()
            m._forward_pre_hooks.clear()
    enc, dec, up = seen["conv1_2"], seen["decoded"], seen["unpooled"]
    assert up.shape == enc.shape and dec.shape[-2:] == (16, 16)
    # every 2x2 window of the unpooled map holds the decoded value once, at a position where the
    # encoder's window had its maximum, and zeros elsewhere
    window_max = F.interpolate(F.max_pool2d(enc, 2), scale_factor=2, mode="nearest")
    assert not (up.ne(0) & enc.ne(window_max)).any()
    torch.testing.assert_close(F.avg_pool2d(up, 2) * 4, dec, rtol=0, atol=1e-6)
    assert up.ne(0).sum() <= up.numel() // 4 and up.ne(0).sum() > 0
    # and a different set of indices (the encoder's maxima of another image) moves the values
    other = torch.randn_like(enc)
    _, idx = F.max_pool2d(other, 2, 2, return_indices=True)
    assert not torch.equal(F.max_unpool2d(dec, idx, 2, 2).ne(0), up.ne(0))


def test_segnet_gradients_reach_the_first_conv(segnet):
    model = copy.deepcopy(segnet).train()
    out = model(torch.randn(1, 3, 33, 47))  # odd sizes: unpooling restores them
    assert out.shape == (1, 11, 33, 47) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grad = model.encoder[0].conv1.conv.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# --- FC-DenseNet --------------------------------------------------------------------------------

def test_fc_densenet_runs_and_gradients_reach_the_stem():
    torch.manual_seed(0)
    model = archzoo.create_model("fc_densenet56").train()
    out = model(torch.randn(2, 3, 33, 47))
    assert out.shape == (2, 11, 33, 47) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    assert torch.isfinite(model.stem.weight.grad).all() and model.stem.weight.grad.abs().sum() > 0
    # transition up: only the previous block's new maps are upsampled, then the skip is appended
    up = model.transitions_up[0]
    assert up.conv.in_channels == up.conv.out_channels == 4 * 12
    assert model.up_blocks[0].layers[0].norm2.bn.num_features == 4 * 12 + model.down_blocks[-1].out_chs
