"""MobileNetV2 — Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
arXiv:1801.04381.

Added the inverted residual with a linear bottleneck: shortcuts join the narrow ends of each
block, the block expands six times inside and filters with a cheap depthwise 3x3, and the
projection back to the narrow width has no activation. ReLU6 everywhere else. The paper's
Table 2 (expansion t, channels c, repeats n, stride s per row) is written below as block
strings; a width multiplier scales every layer except the 1280-wide head, which never shrinks.
"""

from __future__ import annotations

import torch

from ..blockstring import ACTIVATIONS, parse_stages
from ..features import FeatureInfo
from ..layers import ConvNormAct, build_stages, create_norm_layer, round_channels, scale_stages, stage_features
from ..registry import family_card, register_variants
from .base import Classifier, init_weights

# Table 2 of the paper, one stage per row: ds = the t=1 row (no expansion), ir = inverted residual
MOBILENET_V2 = (
    ("ds_r1_k3_s1_c16",),
    ("ir_r2_k3_s2_e6_c24",),
    ("ir_r3_k3_s2_e6_c32",),
    ("ir_r4_k3_s2_e6_c64",),
    ("ir_r3_k3_s1_e6_c96",),
    ("ir_r3_k3_s2_e6_c160",),
    ("ir_r1_k3_s1_e6_c320",),
)


class MobileNet(Classifier):
    """Stem 3x3/2 -> stages of block strings -> 1x1 head conv -> global average pool -> dropout -> linear.

    The network every block-string family is: MobileNetV2 here, and EfficientNet (which adds SE,
    swish and compound scaling through the same arguments).

    Args:
        arch: stage list of block strings (see :mod:`archzoo.blockstring`); default: MobileNetV2's.
        width_mult, depth_mult: multipliers for every width (rounded to multiples of 8) and every
            stage's repeats (rounded up).
        stem_chs, head_chs: unscaled widths of the stem and head convolutions.
        keep_head_width: the head is never narrower than ``head_chs`` (MobileNetV2: ``1280 *
            max(1, width_mult)``); otherwise it scales like every other layer (EfficientNet).
        act: activation name (``relu6`` in MobileNetV2, ``silu`` in EfficientNet).
        bn_eps, bn_momentum: batch-norm settings (PyTorch's momentum convention).
        drop_rate: dropout before the classifier; drop_path_rate: the rate of stochastic depth —
            block ``i`` (from 0) of ``n`` drops its branch with ``drop_path_rate * i / n``, so the
            last block with ``drop_path_rate * (n - 1) / n`` (torchvision's and timm's EfficientNet rule).
        output_stride: stop reducing at 8 or 16 (``None``: 32); later blocks dilate their depthwise
            convolution instead of striding (:mod:`archzoo.layers.dilation`).
        norm_layer: ``"batchnorm"``, ``"frozen_batchnorm"`` or ``"groupnorm"``
            (:func:`~archzoo.layers.create_norm_layer`; ``bn_eps`` applies to all three).
    """

    feature_chain = ("stem", "stages")

    def __init__(
        self,
        arch=MOBILENET_V2,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        stem_chs: int = 32,
        head_chs: int = 1280,
        keep_head_width: bool = True,
        act: str = "relu6",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        output_stride: int | None = None,
        norm_layer: str = "batchnorm",
    ):
        super().__init__()
        act_layer = ACTIVATIONS[act]
        norm = create_norm_layer(norm_layer, eps=bn_eps, momentum=bn_momentum)
        self.stage_specs = scale_stages(parse_stages(arch), width_mult, depth_mult)
        stem_chs = round_channels(stem_chs, width_mult)
        head_chs = round_channels(head_chs, max(1.0, width_mult) if keep_head_width else width_mult)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, norm_layer=norm, act_layer=act_layer)
        self.stages, info = build_stages(self.stage_specs, stem_chs, act_layer, norm, drop_path_rate, in_stride=2,
                                         output_stride=output_stride)
        self.conv_head = ConvNormAct(info[-1]["channels"], head_chs, 1, norm_layer=norm, act_layer=act_layer)
        self.feature_info = FeatureInfo(stage_features(info))
        self.init_head(head_chs, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.stages(self.stem(x)))


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv",),
    family="mobilenet_v2",
    year=2018,
    paper="arXiv:1801.04381 MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al.)",
    tricks=("depthwise_separable_conv", "inverted_residual", "linear_bottleneck", "relu6", "residual_shortcut",
            "pointwise_conv", "batch_norm", "global_average_pooling", "dropout"),
    min_input_size=(3, 32, 32),
)
_TIMM_NOTE = "Same layout as timm's mobilenetv2_{}; timm evaluates it with bicubic resizing at crop 0.875."

register_variants(MobileNet, [
    card("mobilenet_v2", reference="torchvision:mobilenet_v2", kwargs=dict(width_mult=1.0),
         notes="Width 1.0. Converts from torchvision's mobilenet_v2 and from timm's mobilenetv2_100 (same "
               "network, tested against both). torchvision evaluates it at crop 224 after resize 256."),
    card("mobilenet_v2_035", reference="timm:mobilenetv2_035", kwargs=dict(width_mult=0.35), notes=_TIMM_NOTE.format("035")),
    card("mobilenet_v2_050", reference="timm:mobilenetv2_050", kwargs=dict(width_mult=0.5), notes=_TIMM_NOTE.format("050")),
    card("mobilenet_v2_075", reference="timm:mobilenetv2_075", kwargs=dict(width_mult=0.75), notes=_TIMM_NOTE.format("075")),
    card("mobilenet_v2_140", reference="timm:mobilenetv2_140", kwargs=dict(width_mult=1.4), notes=_TIMM_NOTE.format("140")),
])
