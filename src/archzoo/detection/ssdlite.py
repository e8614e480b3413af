"""SSDLite — SSD with depthwise-separable layers, for phones (Sandler et al. 2018, "MobileNetV2:
Inverted Residuals and Linear Bottlenecks", arXiv:1801.04381, section 6.3 and Table 6).

Every regular convolution of SSD's prediction layers becomes a depthwise-separable one: each head
is a 3x3 depthwise convolution (batch norm, ReLU6) and a 1x1 convolution to the outputs, and each
extra layer a 1x1 reduction to half the width, a 3x3 depthwise convolution with stride 2 and a 1x1
expansion (all with batch norm and ReLU6). On MobileNetV2 the first prediction map is the 1x1
expansion inside block 15, the first block at output stride 16 of the last resolution (576
channels), the second the last layer (1280 channels); four extra layers (512, 256, 256, 128)
follow. MobileNetV3 (Howard et al. 2019, arXiv:1905.02244, section 6.3) does the same with its C4
block's expansion and halves the channels of its last block ("reduced tail").

``ssdlite320_mobilenet_v3_large`` is torchvision's: 320x320 inputs, default box scales from 0.2
to 0.95 with aspect ratios 2 and 3 on all six maps, batch norm with eps 0.001 and momentum 0.03,
images scaled to -1..1. ``ssdlite320_mobilenet_v2`` is the paper's detector in the same setting.
The expansion tap is read without hooks: :class:`MobileNetTaps` runs the backbone's blocks itself
and splits the C4 block after its ``expand``.
"""

from __future__ import annotations


import torch
import torch.nn as nn

from ..layers import ConvNormAct
from ..registry import family_card, register_variants
from .default_boxes import DefaultBoxGenerator
from .ssd import SSD, SSDNeck, _check_size, resolve_background

SSDLITE_MEAN = SSDLITE_STD = (0.5, 0.5, 0.5)


class MobileNetTaps(nn.Module):
    """A zoo MobileNet's ``stem``, ``stages`` and ``conv_head`` (their classifier names, nothing
    else), giving two maps: the 1x1 expansion inside the block that reduces to stride 32 (the C4
    block) and the last layer's output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.stem, self.stages, self.conv_head = model.stem, model.stages, model.conv_head
        stride, self.c4 = self.stem.conv.stride[0], None
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                s = block.depthwise.conv.stride[0]
                if s > 1 and stride * s == 32 and hasattr(block, "expand"):
                    self.c4 = (i, j)
                stride *= s
        if self.c4 is None or self.stages[self.c4[0]][self.c4[1]].has_skip:
            raise ValueError(f"{type(model).__name__}: no inverted residual reduces stride 16 to 32 (SSDLite's C4 block)")
        block = self.stages[self.c4[0]][self.c4[1]]
        self.channels = [block.expand.out_chs, self.conv_head.out_chs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        c4 = x
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage):
                if (i, j) == self.c4:
                    x = c4 = block.expand(x)
                    x = block.project(block.se(block.depthwise(x)))
                else:
                    x = block(x)
        return [c4, self.conv_head(x)]


def extra_block(in_chs: int, out_chs: int, norm: type[nn.Module]) -> nn.Sequential:
    """1x1 to half ``out_chs`` -> 3x3 depthwise, stride 2 -> 1x1 to ``out_chs``; each with norm and ReLU6."""
    mid = out_chs // 2
    return nn.Sequential(
        ConvNormAct(in_chs, mid, 1, norm_layer=norm, act_layer=nn.ReLU6),
        ConvNormAct(mid, mid, 3, stride=2, groups=mid, norm_layer=norm, act_layer=nn.ReLU6),
        ConvNormAct(mid, out_chs, 1, norm_layer=norm, act_layer=nn.ReLU6),
    )


def _normal_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.03)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def ssdlite(num_classes: int = 91, in_chans: int = 3, backbone: str = "mobilenet_v2", image_size=320,
            reduced_tail: bool = False, norm_layer: str | None = None, background_label0: bool | None = None,
            bn_momentum: float = 0.03, **kwargs) -> SSD:
    """SSDLite on ``backbone``: a zoo MobileNet (C4 expansion and last layer) or any classifier (its
    stride-16 and stride-32 maps); four depthwise-separable extra layers; depthwise-separable heads.
    ``bn_momentum``: every batch norm's (torchvision's 0.03 suits long training; short runs want
    more, or eval-mode statistics lag behind). ``kwargs`` go to :class:`~archzoo.detection.ssd.SSD` (thresholds)."""
    from functools import partial

    from ..builder import create_model

    size = _check_size(image_size)
    opts = {"norm_layer": norm_layer} if norm_layer else {}
    if reduced_tail:  # MobileNetV3's detection backbone (its paper, section 6.3): the last stage halved
        if not backbone.startswith("mobilenet_v3"):
            raise ValueError(f"reduced_tail is MobileNetV3's option, not {backbone}'s")
        opts["reduced_tail"] = True
    if backbone.startswith("mobilenet"):
        opts.update(bn_eps=0.001, bn_momentum=bn_momentum)
        body = MobileNetTaps(create_model(backbone, in_chans=in_chans, **opts))
        channels = body.channels
    else:
        body = create_model(backbone, features_only=True, out_strides=(16, 32), in_chans=in_chans, **opts)
        channels = body.feature_info.channels()
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=bn_momentum)
    widths = (512, 256, 256, 128)
    neck = SSDNeck([extra_block(c, w, norm) for c, w in zip((channels[1], *widths[:-1]), widths)])
    _normal_init(neck)

    def head_block(c: int, out: int) -> nn.Module:
        block = nn.Sequential(ConvNormAct(c, c, 3, groups=c, norm_layer=norm, act_layer=nn.ReLU6), nn.Conv2d(c, out, 1))
        _normal_init(block)
        return block

    boxes = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    settings = dict(score_thresh=0.001, nms_thresh=0.55, detections_per_img=300, topk_candidates=300)
    return SSD(body, neck, [*channels, *widths], head_block, boxes, num_classes, size, SSDLITE_MEAN, SSDLITE_STD,
               background_label0=resolve_background(num_classes, background_label0), **{**settings, **kwargs})


_HEADS = tuple(f"head.classification.{i}.1" for i in range(6))

card = family_card(
    family="ssdlite",
    year=2018,
    paper="arXiv:1801.04381 MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al.), section 6.3",
    tricks=("multiscale_default_boxes", "anchor_boxes", "hard_negative_mining", "non_maximum_suppression",
            "depthwise_separable_conv", "pointwise_conv", "relu6", "batch_norm"),
    task="detection",
    dataset="COCO",
    num_classes=91,
    mean=SSDLITE_MEAN,
    std=SSDLITE_STD,
    input_size=(3, 320, 320),
    min_input_size=(3, 64, 64),
    heads=_HEADS,
    input_convs=("backbone.stem.conv",),
)

register_variants(ssdlite, [
    card("ssdlite320_mobilenet_v2", kwargs=dict(backbone="mobilenet_v2"),
         notes="The paper's MobileSSD (Table 6: 4.3M parameters, 0.8B multiply-adds) in torchvision's SSDLite "
               "setting (6 default boxes everywhere, scales 0.2-0.95, 320x320); the paper's TF detector has 3 boxes "
               "on the first map. 91 classes: torchvision's COCO labels with label 0 the background; any other "
               "num_classes counts object classes with a background logit of their own."),
    card("ssdlite320_mobilenet_v3_large", reference="torchvision:ssdlite320_mobilenet_v3_large", year=2019,
         paper="arXiv:1905.02244 Searching for MobileNetV3 (Howard et al.), section 6.3",
         extra_tricks=("hard_swish", "squeeze_excitation"),
         kwargs=dict(backbone="mobilenet_v3_large", reduced_tail=True),
         notes="torchvision's ssdlite320_mobilenet_v3_large as built without weights: MobileNetV3-Large with the "
               "reduced tail (last stage 80 wide, last 1x1 conv 480)."),
])
