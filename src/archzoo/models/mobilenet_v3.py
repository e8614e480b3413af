"""MobileNetV3 — Howard et al. 2019, "Searching for MobileNetV3", arXiv:1905.02244.

Added, on MobileNetV2's inverted residuals with MnasNet's squeeze-excitation:

* hard-swish, ``h-swish(x) = x * relu6(x + 3) / 6``: swish made piecewise linear, cheap and easy
  to quantise. It pays off in the deeper layers, so the first blocks keep ReLU (an activation
  per block: the ``relu`` token in the tables below);
* squeeze-excitation gated by the hard sigmoid ``relu6(x + 3) / 6``, with a squeeze width of a
  quarter of the *expanded* width rounded to a multiple of 8, ReLU inside, placed after the
  depthwise convolution (``se_style="mobilenet_v3"``);
* block tables found by platform-aware NAS and trimmed by NetAdapt (Tables 1 and 2, written
  below as block strings; ``eX`` is the expanded width over the block's input width, ``se0.25``
  the quarter of the expanded width);
* the efficient last stage (Figure 5): the 1x1 convolution to 960 (576) channels runs at 7x7,
  then the map is pooled and the widest layer, 1x1 to 1280 (1024) with hard-swish and no norm,
  runs on the pooled vector, a hidden fully-connected layer of the head. The stem is 16 wide.

The body is MobileNetV2's block-string machinery (:func:`~archzoo.layers.build_stages`); the head
is :class:`~archzoo.layers.FCHead` with one hidden layer.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..blockstring import ACTIVATIONS, parse_stages
from ..features import FeatureInfo, feature
from ..layers import (
    SE_STYLES,
    ConvNormAct,
    FCHead,
    build_stages,
    create_norm_layer,
    round_channels,
    scale_stages,
    stage_features,
)
from ..registry import family_card, register_variants
from .base import Classifier, init_weights

# Table 1 of the paper (MobileNetV3-Large), grouped into stages by resolution and width
MOBILENET_V3_LARGE = (
    ("ds_r1_k3_s1_c16_relu",),
    ("ir_r1_k3_s2_e4_c24_relu", "ir_r1_k3_s1_e3_c24_relu"),
    ("ir_r3_k5_s2_e3_c40_se0.25_relu",),
    ("ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"),
    ("ir_r2_k3_s1_e6_c112_se0.25",),
    ("ir_r3_k5_s2_e6_c160_se0.25",),
)

# Table 2 of the paper (MobileNetV3-Small); 88 / 24 is written e3.67 (rounded to 88 channels)
MOBILENET_V3_SMALL = (
    ("ds_r1_k3_s2_c16_se0.25_relu",),
    ("ir_r1_k3_s2_e4.5_c24_relu", "ir_r1_k3_s1_e3.67_c24_relu"),
    ("ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"),
    ("ir_r2_k5_s1_e3_c48_se0.25",),
    ("ir_r3_k5_s2_e6_c96_se0.25",),
)


class MobileNetV3(Classifier):
    """Stem 3x3/2 -> stages of block strings -> 1x1 conv -> pool -> hidden 1x1 (linear) -> dropout -> linear.

    ``forward_features`` returns the map of the last 1x1 conv (960 channels in Large), the last
    ``feature_info`` entry, as timm and torchvision's detection and segmentation backbones use it.
    Where the first stage strides (Small), the stem's output is the stride-2 entry.

    Args:
        arch: stage list of block strings; default: MobileNetV3-Large's.
        width_mult: multiplier of every width but the stem's (rounded to multiples of 8; the
            expanded widths follow as ratios of the rounded inputs, timm's rule).
        stem_chs, head_chs, hidden_chs: widths of the stem, the last 1x1 conv and the head's
            hidden layer (Large: 16, 960, 1280; Small: 16, 576, 1024).
        act: the network's activation (blocks may override it); ``se_style``: a key of
            :data:`~archzoo.layers.SE_STYLES`.
        bn_eps, bn_momentum: batch-norm settings (torchvision's 1e-3 and 0.01).
        drop_rate: dropout after the hidden layer; drop_path_rate: stochastic depth (as MobileNetV2's).
        reduced_tail: halve the widths of the last stage, the last 1x1 conv and the hidden layer
            (the paper's section 6.3 for detection and segmentation; torchvision's ``reduced_tail``,
            which its SSDLite and segmentation models use).
        output_stride: stop reducing at 8 or 16 (``None``: 32); later blocks dilate instead.
        dilate_strided: the block that gives up its stride dilates already (torchvision's
            ``dilated=True``); ``False``: it keeps the previous dilation (timm's ``output_stride``).
        norm_layer: ``"batchnorm"``, ``"frozen_batchnorm"`` or ``"groupnorm"``.
    """

    feature_chain = ("stem", "stages", "conv_head")

    def __init__(
        self,
        arch=MOBILENET_V3_LARGE,
        width_mult: float = 1.0,
        stem_chs: int = 16,
        head_chs: int = 960,
        hidden_chs: int = 1280,
        act: str = "hardswish",
        se_style: str = "mobilenet_v3",
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        reduced_tail: bool = False,
        output_stride: int | None = None,
        dilate_strided: bool = True,
        norm_layer: str = "batchnorm",
    ):
        super().__init__()
        act_layer = ACTIVATIONS[act]
        norm = create_norm_layer(norm_layer, eps=bn_eps, momentum=bn_momentum)
        stages = parse_stages(arch)
        if reduced_tail:
            stages = (*stages[:-1], tuple(replace(spec, out_chs=spec.out_chs // 2) for spec in stages[-1]))
            head_chs, hidden_chs = head_chs // 2, hidden_chs // 2
        self.stage_specs = scale_stages(stages, width_mult)
        head_chs, hidden_chs = round_channels(head_chs, width_mult), round_channels(hidden_chs, width_mult)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, norm_layer=norm, act_layer=act_layer)
        self.stages, info = build_stages(self.stage_specs, stem_chs, act_layer, norm, drop_path_rate, in_stride=2,
                                         output_stride=output_stride, se_style=SE_STYLES[se_style],
                                         dilate_strided=dilate_strided)
        self.conv_head = ConvNormAct(info[-1]["channels"], head_chs, 1, norm_layer=norm, act_layer=act_layer)
        # timm's convention: the stem where the first stage strides, each stage before a stride, the last conv
        stem = [feature(stem_chs, 2, "stem")] if info[0]["nominal_stride"] > 2 else []
        last = feature(head_chs, info[-1]["stride"], "conv_head")
        self.feature_info = FeatureInfo(stem + stage_features(info)[:-1] + [last])
        self.num_features, self.num_classes = head_chs, num_classes
        self.head = FCHead(head_chs, num_classes, hidden=(hidden_chs,), pool_size=1, drop_rate=drop_rate,
                           act_layer=act_layer)
        self.head_hidden_size = self.head.hidden_size
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.stages(self.stem(x)))


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv",),
    family="mobilenet_v3",
    year=2019,
    paper="arXiv:1905.02244 Searching for MobileNetV3 (Howard et al.)",
    tricks=("hard_swish", "hard_sigmoid_gate", "searched_block_table", "efficient_last_stage", "mbconv_se",
            "squeeze_excitation", "inverted_residual", "linear_bottleneck", "depthwise_separable_conv", "relu",
            "residual_shortcut", "pointwise_conv", "batch_norm", "global_average_pooling", "dropout"),
    min_input_size=(3, 32, 32),
)
_NOTES = ("Converts from torchvision's {0}; torchvision evaluates it at crop 224 after resize {1}. The head's "
          "hidden 1x1 conv on the pooled vector is a linear layer (head.pre_logits.fc1), as in torchvision. "
          "output_stride=16 dilates as torchvision's {0}(dilated=True) (dilate_strided=False: as timm); "
          "reduced_tail=True is torchvision's reduced_tail=True.")

register_variants(MobileNetV3, [
    card("mobilenet_v3_large", reference="torchvision:mobilenet_v3_large", kwargs=dict(arch=MOBILENET_V3_LARGE),
         notes="Table 1 of the paper. " + _NOTES.format("mobilenet_v3_large", "232 (IMAGENET1K_V2)")),
    card("mobilenet_v3_small", reference="torchvision:mobilenet_v3_small",
         kwargs=dict(arch=MOBILENET_V3_SMALL, head_chs=576, hidden_chs=1024),
         notes="Table 2 of the paper. " + _NOTES.format("mobilenet_v3_small", 256)),
])
