"""FCN-32s, FCN-16s, FCN-8s — Long, Shelhamer & Darrell 2014, "Fully Convolutional Networks for
Semantic Segmentation", arXiv:1411.4038 (CVPR 2015).

A classifier becomes a dense predictor (section 3.1): VGG-16's fully-connected layers are cast as
convolutions — fc6 a 7x7 convolution to 4096 channels that sees the 7x7 pool5 window its weights
were trained on, fc7 a 1x1 to 4096, both with ReLU and dropout 0.5 — so the net maps an image of
any size to a map of features at stride 32; a 1x1 convolution (``score_fr``) scores the classes
and in-network upsampling (a transposed convolution, "deconvolution", of stride ``f`` and kernel
``2f``, initialised to bilinear interpolation) brings the scores back to the image (section 3.3).
The net is trained end to end with a per-pixel cross-entropy.

The skip architecture (section 4.2, Figure 3) fuses coarse, semantic scores with fine ones:
FCN-16s upsamples the stride-32 scores 2x (``upscore2``), adds scores of ``pool4`` from a 1x1
convolution (``score_pool4``) and upsamples the sum 16x; FCN-8s also upsamples that sum 2x
(``upscore_pool4``), adds ``score_pool3`` and upsamples 8x. The scoring layers start at zero (the
paper zero-initialises the class scorer "as random initialization yielded neither better
performance nor faster convergence", and the new skip scorers, so a finer net starts as the
coarser one). The paper also fixes the *final* upsampling to bilinear interpolation and learns
only the 2x ones; here every upsampling is learned (``model.upscore.weight.requires_grad_(False)``
fixes the final one).

**Geometry.** The paper pads conv1_1 by 100 pixels, so that fc6's unpadded 7x7 window fits any
input, pools with Caffe's rounding up, and aligns the maps by cropping at fixed offsets (pool4's
scores by 5, pool3's by 9, the output by 19 / 27 / 31 for 32s / 16s / 8s). Those offsets are
where the maps' centres line up: pool5's cell ``i`` is centred on input pixel ``32 i + 15.5 - 99``
(the middle of its 32-px cell, shifted by conv1_1's 100 px of padding less its own 1), an
unpadded 7x7 fc6 moves that by 3 cells, and a kernel-``2f`` deconvolution puts input cell ``i`` at
output ``f i + f - 0.5`` (32s: ``32 i + 31.5 - (32 (i + 3) - 83.5) = 19``). ``caffe_padding=True``
builds exactly that net. By default the net is the *aligned* variant without the hack: every
convolution keeps the size ("same" padding, fc6 padded by 3), the deconvolutions are padded by
``f / 2`` — so a kernel-``2f`` deconvolution is centred exactly like bilinear interpolation with
``align_corners=False`` and ``f h`` rows come out of ``h`` — and the input is zero-padded at the
bottom and right to a multiple of 32 and the output cropped back. Then every map is aligned at
offset 0, no crops are needed, and VGG runs on the image, not on an image 198 pixels larger (at
500x500 the hack almost doubles the compute). The weights have the same shapes in both, so
:meth:`FCN.init_from_classifier` (the paper's start from
an ImageNet VGG) works for either.

The VGG is the zoo's classifier's convolutional stages (:func:`vgg_encoder`, any ``vgg*``
variant); SegNet (:mod:`~archzoo.segmentation.segnet`) reuses it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import ConvNormAct
from ..models.base import init_weights
from ..registry import family_card, register_variants
from .base import Segmenter

#: Caffe's crop offsets with conv1_1 padded by 100: (pool4 scores, pool3 scores, output per skips)
CAFFE_OFFSETS = (5, 9, (19, 27, 31))


def vgg_encoder(backbone: str = "vgg16", in_chans: int = 3) -> nn.ModuleList:
    """The convolutional stages of the zoo's VGG classifier ``backbone`` (``vgg11`` ... ``vgg19``,
    ``*_bn``) without its pooling layers: ``encoder[i]`` holds conv``i+1``_1, conv``i+1``_2, ...; the
    caller pools after each stage. Parameter names are the classifier's ``stages.*`` ones, so
    ``encoder.load_state_dict`` takes a VGG's stages (their pools hold no weights)."""
    if not isinstance(backbone, str) or not backbone.startswith("vgg"):
        raise ValueError(f"backbone must name a zoo VGG (vgg11 ... vgg19, vgg16_bn ...), got {backbone!r}")
    from ..builder import create_model

    vgg = create_model(backbone, num_classes=0, hidden=(), in_chans=in_chans)  # no 120M-weight FC head
    return nn.ModuleList(nn.Sequential(OrderedDict((n, m) for n, m in stage.named_children() if n != "pool"))
                         for stage in vgg.stages)


def bilinear_kernel(size: int, **factory) -> torch.Tensor:
    """The ``size x size`` bilinear interpolation kernel (upsampling factor ``ceil(size / 2)``),
    centred between the middle taps for even sizes; ``factory``: dtype/device of the result."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    t = 1 - (torch.arange(size, **factory) - centre).abs() / factor
    return t[:, None] * t[None, :]


def bilinear_deconv(channels: int, factor: int, padding: int) -> nn.ConvTranspose2d:
    """A learnable ``factor``x upsampling of each channel: a bias-free transposed convolution of
    kernel ``2 * factor`` and stride ``factor``, initialised to bilinear interpolation (each output
    channel from its own input channel only)."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=padding, bias=False)
    with torch.no_grad():
        w = up.weight
        eye = torch.eye(channels, dtype=w.dtype, device=w.device)
        w.copy_(eye[:, :, None, None] * bilinear_kernel(2 * factor, dtype=w.dtype, device=w.device))
    return up


def _fc_conv(in_chs: int, out_chs: int, kernel_size: int, padding: int, drop_rate: float) -> ConvNormAct:
    """A fully-connected layer cast as a convolution: conv -> ReLU -> dropout."""
    layer = ConvNormAct(in_chs, out_chs, kernel_size, padding=padding, norm_layer=None)
    layer.add_module("drop", nn.Dropout(drop_rate))
    return layer


def _crop(x: torch.Tensor, size, offset: int) -> torch.Tensor:
    h, w = size
    return x[..., offset:offset + h, offset:offset + w]


class FCN(Segmenter):
    """FCN on VGG (see the module doc): encoder -> fc6 -> fc7 -> ``score_fr`` -> skip fusions ->
    ``upscore`` to the input's size.

    Args:
        num_classes: classes including the background (PASCAL VOC: 21).
        skips: fused finer layers: 0 (FCN-32s), 1 (pool4: FCN-16s), 2 (pool4, pool3: FCN-8s).
        backbone: the zoo VGG whose convolutions are the encoder (``vgg16``).
        fc_width: channels of fc6 and fc7 (4096); drop_rate: dropout after them (0.5).
        caffe_padding: the paper's geometry (conv1_1 padded by 100, pooling rounding up, fixed
            crops) instead of the aligned one.
    """

    def __init__(self, num_classes: int = 21, in_chans: int = 3, skips: int = 2, backbone: str = "vgg16",
                 fc_width: int = 4096, drop_rate: float = 0.5, caffe_padding: bool = False):
        super().__init__()
        if isinstance(skips, bool) or skips not in (0, 1, 2):
            raise ValueError(f"skips must be 0 (FCN-32s), 1 (FCN-16s) or 2 (FCN-8s), got {skips!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes, self.skips, self.caffe_padding = num_classes, skips, bool(caffe_padding)
        self.encoder = vgg_encoder(backbone, in_chans)
        widths = [stage[-1].out_chs for stage in self.encoder]
        if len(widths) != 5:
            raise ValueError(f"backbone {backbone!r} has {len(widths)} stages; FCN needs VGG's five")
        if self.caffe_padding:
            self.encoder[0][0].conv.padding = (100, 100)
        self.fc6 = _fc_conv(widths[4], fc_width, 7, 0 if self.caffe_padding else 3, drop_rate)
        self.fc7 = _fc_conv(fc_width, fc_width, 1, 0, drop_rate)
        init_weights(self.fc6)
        init_weights(self.fc7)
        k, pad = num_classes, (lambda f: 0 if self.caffe_padding else f // 2)
        self.score_fr = nn.Conv2d(fc_width, k, 1)
        if skips >= 1:
            self.upscore2 = bilinear_deconv(k, 2, pad(2))
            self.score_pool4 = nn.Conv2d(widths[3], k, 1)
        if skips >= 2:
            self.upscore_pool4 = bilinear_deconv(k, 2, pad(2))
            self.score_pool3 = nn.Conv2d(widths[2], k, 1)
        self.upscore = bilinear_deconv(k, 32 >> skips, pad(32 >> skips))
        for name in ("score_fr", "score_pool4", "score_pool3"):  # zero-initialised scorers (section 4.3)
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        pool4, pool3, out = CAFFE_OFFSETS if self.caffe_padding else (0, 0, (0, 0, 0))
        self.offsets = (pool4, pool3, out[skips])

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """pool1 ... pool5 (strides 2 ... 32)."""
        pools = []
        for stage in self.encoder:
            x = F.max_pool2d(stage(x), 2, 2, ceil_mode=self.caffe_padding)
            pools.append(x)
        return pools

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if not self.caffe_padding:  # the aligned net: pad to a multiple of 32, crop the output back
            ph, pw = -size[0] % 32, -size[1] % 32
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph))
        _, _, pool3, pool4, pool5 = self.encode(x)
        score = self.score_fr(self.fc7(self.fc6(pool5)))
        if self.skips >= 1:
            score = self.upscore2(score)
            score = score + _crop(self.score_pool4(pool4), score.shape[-2:], self.offsets[0])
        if self.skips >= 2:
            score = self.upscore_pool4(score)
            score = score + _crop(self.score_pool3(pool3), score.shape[-2:], self.offsets[1])
        return _crop(self.upscore(score), size, self.offsets[2])

    @torch.no_grad()
    def init_from_classifier(self, vgg: nn.Module) -> None:
        """Start from a zoo VGG classifier as the paper starts from ImageNet's (section 4.1): its
        convolutions, and its first two fully-connected layers *convolutionalised* — fc1's
        ``4096 x (512 * 7 * 7)`` weights reshaped into fc6's 7x7 kernels, fc2's into fc7's 1x1."""
        stages = getattr(vgg, "stages", None)
        hidden = getattr(getattr(vgg, "head", None), "pre_logits", None)
        if stages is None or hidden is None or not hasattr(hidden, "fc2"):
            raise ValueError(f"vgg must be a zoo VGG classifier with two hidden FC layers, got {type(vgg).__name__}")
        def shapes(modules) -> list[dict]:
            return [{k: v.shape for k, v in m.state_dict().items()} for m in modules]

        if shapes(self.encoder) != shapes(stages):
            name = getattr(getattr(vgg, "card", None), "name", type(vgg).__name__)
            raise ValueError(f"vgg ({name}): its convolutions do not fit this FCN's encoder; build the FCN with "
                             f"backbone={name!r}")
        pairs = ((self.fc6.conv, hidden.fc1), (self.fc7.conv, hidden.fc2))
        for conv, fc in pairs:
            if fc.weight.numel() != conv.weight.numel():
                raise ValueError(f"vgg's {tuple(fc.weight.shape)} FC layer does not fit the {tuple(conv.weight.shape)} "
                                 "convolution: build the FCN with fc_width equal to the VGG's hidden width")
        for ours, theirs in zip(self.encoder, stages):
            ours.load_state_dict(theirs.state_dict())
        for conv, fc in pairs:
            conv.weight.copy_(fc.weight.view_as(conv.weight))
            conv.bias.copy_(fc.bias)


# --- variants -----------------------------------------------------------------------------------

card = family_card(
    family="fcn", arch="fcn_vgg", task="segmentation", year=2014,
    paper="arXiv:1411.4038 Fully Convolutional Networks for Semantic Segmentation (Long, Shelhamer, Darrell)",
    tricks=("fully_convolutional", "bilinear_deconvolution", "conv_pool_stack", "stacked_3x3_convs", "relu",
            "dropout"),
    dataset="PASCAL VOC 2012", num_classes=21,
    input_size=(3, 500, 500), min_input_size=(3, 32, 32),
    input_convs=("encoder.0.conv1.conv",), cam_layer="fc7",
)
_NOTES = ("{0} (section 4.2) on VGG-16: fc6/fc7 as 7x7/1x1 convolutions, zero-initialised scorers, deconvolutions "
          "initialised to bilinear and learned. The aligned geometry (same padding, input padded to a multiple of 32, "
          "no crops) by default; caffe_padding=True is the paper's (conv1_1 padded by 100, crops {1}). "
          "init_from_classifier(vgg) starts from a VGG classifier, its FC layers convolutionalised.")

register_variants(FCN, [
    card("fcn32s_vgg16", heads=("score_fr", "upscore"), kwargs={"skips": 0},
         notes=_NOTES.format("Stride-32 scores upsampled 32x", "19")),
    card("fcn16s_vgg16", heads=("score_fr", "upscore2", "score_pool4", "upscore"), extra_tricks=("skip_fusion",),
         kwargs={"skips": 1}, notes=_NOTES.format("pool4's scores fused with the 2x-upsampled stride-32 scores, "
                                                   "upsampled 16x", "5, 27")),
    card("fcn8s_vgg16", heads=("score_fr", "upscore2", "score_pool4", "upscore_pool4", "score_pool3", "upscore"),
         extra_tricks=("skip_fusion",), kwargs={"skips": 2},
         notes=_NOTES.format("pool4's then pool3's scores fused, upsampled 8x", "5, 9, 31")),
])
