"""ResNet and the networks that are ResNets with one more idea.

* ResNet — He et al. 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385.
  Added the residual shortcut ``y = F(x) + x`` and the bottleneck block; 18 to 152 layers on
  ImageNet and, in section 4.2, 20 to 1202 layers on CIFAR-10 with zero-padding shortcuts.
* ResNeXt — Xie et al. 2016, arXiv:1611.05431: the bottleneck's 3x3 becomes a grouped
  convolution ("cardinality"), e.g. 32 groups of 4 channels (``32x4d``).
* Wide ResNet — Zagoruyko & Komodakis 2016, arXiv:1605.07146: the bottleneck's inner width doubled.
* SE-ResNet / SE-ResNeXt / SENet-154 — Hu et al. 2017, arXiv:1709.01507: every residual branch
  gated by squeeze-and-excitation. SENet-154 also uses a deep 3x3 stem, 3x3 projection
  shortcuts, a 64x4d bottleneck whose first 1x1 halves the width, and dropout before the classifier.

One :class:`ResNet` class builds all of them from the shared blocks in :mod:`archzoo.layers`;
the variant table at the bottom is the only place they differ.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import (
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    OutputStride,
    SqueezeExcite,
    create_norm_layer,
    linear_drop_path,
    make_divisible,
    make_shortcut,
)
from ..registry import CIFAR_MEAN, CIFAR_STD, family_card, register_variants
from .base import Classifier, init_weights


def _stem(kind: str, in_chans: int, width: int, pool: str | None, norm_layer=nn.BatchNorm2d) -> tuple[nn.Sequential, str, int]:
    """The stem and the name and stride of its last convolution.

    ``"7x7"``: one strided 7x7 conv (the paper); ``"deep"``: three 3x3 convs (SENet-154);
    ``"3x3"``: one unstrided 3x3 conv (CIFAR). ``pool``: ``"max"``, ``"max_ceil"`` or ``None``.
    """
    conv = partial(ConvNormAct, norm_layer=norm_layer)
    stem = nn.Sequential()
    if kind == "7x7":
        stem.conv = conv(in_chans, width, 7, stride=2)
        last, stride = "conv", 2
    elif kind == "deep":
        stem.conv1 = conv(in_chans, width // 2, 3, stride=2)
        stem.conv2 = conv(width // 2, width // 2, 3)
        stem.conv3 = conv(width // 2, width, 3)
        last, stride = "conv3", 2
    elif kind == "3x3":
        stem.conv = conv(in_chans, width, 3)
        last, stride = "conv", 1
    else:
        raise ValueError(f"stem must be '7x7', 'deep' or '3x3', got {kind!r}")
    if pool == "max":
        stem.pool = nn.MaxPool2d(3, stride=2, padding=1)
    elif pool == "max_ceil":
        stem.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    elif pool is not None:
        raise ValueError(f"stem pool must be 'max', 'max_ceil' or None, got {pool!r}")
    return stem, last, stride


def _se_layer(se_reduction: int | None):
    """Squeeze-excitation with ``channels / se_reduction`` hidden units, rounded to multiples of 8."""
    if not se_reduction:
        return None
    return lambda chs: SqueezeExcite(chs, make_divisible(chs / se_reduction, 8, round_limit=0.0))


class ResNet(Classifier):
    """Stem -> stages of residual blocks -> global average pool -> linear.

    Args:
        block: ``"basic"`` (two 3x3) or ``"bottleneck"`` (1x1-3x3-1x1, output ``4 * planes``).
        layers: blocks per stage; ``planes``: base width per stage.
        groups, base_width: ResNeXt cardinality and width per group (the 3x3 has
            ``planes * base_width / 64 * groups`` channels).
        reduce_ratio: width of the first 1x1 relative to the 3x3 (SENet-154: 0.5).
        stem, stem_width, stem_pool: see :func:`_stem`.
        shortcut: ``"B"`` projection or ``"A"`` zero padding; ``shortcut_kernel``: the projection's
            kernel in stages after the first (SENet-154: 3).
        se_reduction: squeeze-excitation reduction (16 in the SE papers), ``None`` for none.
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth of the last
            block, linear in depth (:func:`~archzoo.layers.linear_drop_path`, timm's rule).
        zero_init_last: start each residual branch's last norm at zero, so every block begins as the
            identity (Goyal et al. 2017, arXiv:1706.02677); without it a freshly built ResNet-1202
            overflows in eval mode.
        output_stride: stop reducing at 8 or 16 (``None``: 32): later stages dilate instead of
            striding, exactly as torchvision's ``replace_stride_with_dilation`` (DeepLab's backbones).
        norm_layer: ``"batchnorm"``, ``"frozen_batchnorm"`` or ``"groupnorm"``
            (:func:`~archzoo.layers.create_norm_layer`).
    """

    feature_chain = ("stem", "stages")

    def __init__(
        self,
        block: str = "bottleneck",
        layers: tuple[int, ...] = (3, 4, 6, 3),
        planes: tuple[int, ...] = (64, 128, 256, 512),
        groups: int = 1,
        base_width: int = 64,
        reduce_ratio: float = 1.0,
        stem: str = "7x7",
        stem_width: int = 64,
        stem_pool: str | None = "max",
        shortcut: str = "B",
        shortcut_kernel: int = 1,
        se_reduction: int | None = None,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        output_stride: int | None = None,
        norm_layer: str = "batchnorm",
    ):
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if len(planes) != len(layers):
            raise ValueError(f"planes {planes} and layers {layers} must have the same length")
        norm = create_norm_layer(norm_layer)
        self.stem, stem_last, stride = _stem(stem, in_chans, stem_width, stem_pool, norm)
        self.feature_info = [feature(stem_width, stride, f"stem.{stem_last}")]
        strides = OutputStride(output_stride, stride * 2 if stem_pool else stride)

        expansion = 4 if block == "bottleneck" else 1
        attn_layer = _se_layer(se_reduction)
        total_blocks, block_idx = sum(layers), 0
        in_chs = stem_width
        stages = []
        for stage_idx, (n, p) in enumerate(zip(layers, planes)):
            # the first block strides (or, past output_stride, keeps the previous dilation)
            first_stride, first_dilation = strides(1 if stage_idx == 0 else 2)
            out_chs = p * expansion
            blocks = []
            for i in range(n):
                s, d = (first_stride, first_dilation) if i == 0 else (1, strides.dilation)
                k = shortcut_kernel if stage_idx > 0 else 1
                kwargs = dict(
                    stride=s,
                    shortcut=make_shortcut(shortcut, in_chs, out_chs, s, kernel_size=k, norm_layer=norm, dilation=d),
                    attn_layer=attn_layer,
                    drop_path=linear_drop_path(drop_path_rate, block_idx, total_blocks),
                    norm_layer=norm,
                )
                if block == "basic":
                    blocks.append(BasicBlock(in_chs, out_chs, dilation=strides.dilation, first_dilation=d, **kwargs))
                else:
                    mid = int(p * base_width / 64) * groups
                    blocks.append(Bottleneck(in_chs, out_chs, mid, groups=groups, reduce_chs=int(mid * reduce_ratio),
                                             dilation=d, **kwargs))
                in_chs = out_chs
                block_idx += 1
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(feature(out_chs, strides.stride, f"stages.{stage_idx}"))
        strides.check(f"a ResNet with {len(layers)} stages")
        self.stages = nn.Sequential(*stages)
        self.feature_info = FeatureInfo(self.feature_info)
        self.init_head(in_chs, num_classes, drop_rate)
        init_weights(self)
        if zero_init_last:
            for b in self.modules():
                if isinstance(b, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(b.conv2.bn.weight if isinstance(b, BasicBlock) else b.conv3.bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


# --- variants ---------------------------------------------------------------------------------

_RESNET_TRICKS = ("residual_shortcut", "projection_shortcut", "batch_norm", "relu", "global_average_pooling")
card = family_card(
    input_convs=("stem.conv.conv",),
    arch="resnet",  # ResNeXt, Wide ResNet and SE-ResNet are this class with one more idea
    family="resnet",
    year=2015,
    paper="arXiv:1512.03385 Deep Residual Learning for Image Recognition (He et al.)",
    tricks=_RESNET_TRICKS,
)
cifar_card = partial(
    card,
    tricks=("residual_shortcut", "zero_padding_shortcut", "batch_norm", "relu", "global_average_pooling"),
    input_size=(3, 32, 32),
    min_input_size=(3, 8, 8),
    dataset="CIFAR-10",
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    notes="CIFAR-10 network of section 4.2: 3 stages of 2n basic blocks (16/32/64 channels), option-A shortcuts.",
)
_RESNEXT = dict(
    family="resnext",
    year=2016,
    paper="arXiv:1611.05431 Aggregated Residual Transformations for Deep Neural Networks (Xie et al.)",
    extra_tricks=("bottleneck", "grouped_conv"),
)
_WIDE = dict(
    family="wide_resnet",
    year=2016,
    paper="arXiv:1605.07146 Wide Residual Networks (Zagoruyko & Komodakis)",
    extra_tricks=("bottleneck", "widening"),
)
_SE = dict(
    family="senet",
    year=2017,
    paper="arXiv:1709.01507 Squeeze-and-Excitation Networks (Hu et al.)",
    extra_tricks=("bottleneck", "squeeze_excitation"),
)
_SE_X = dict(_SE, extra_tricks=("bottleneck", "grouped_conv", "squeeze_excitation"))

_BASIC = dict(block="basic")
_R50, _R101, _R152 = (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)


def _cifar(n: int) -> dict:
    return dict(block="basic", layers=(n, n, n), planes=(16, 32, 64), stem="3x3", stem_width=16, stem_pool=None, shortcut="A")


register_variants(ResNet, [
    card("resnet18", reference="torchvision:resnet18", kwargs=dict(_BASIC, layers=(2, 2, 2, 2))),
    card("resnet34", reference="torchvision:resnet34", kwargs=dict(_BASIC, layers=(3, 4, 6, 3))),
    card("resnet50", reference="torchvision:resnet50", extra_tricks=("bottleneck",), kwargs=dict(layers=_R50)),
    card("resnet101", reference="torchvision:resnet101", extra_tricks=("bottleneck",), kwargs=dict(layers=_R101)),
    card("resnet152", reference="torchvision:resnet152", extra_tricks=("bottleneck",), kwargs=dict(layers=_R152)),
    card("resnext50_32x4d", reference="torchvision:resnext50_32x4d", **_RESNEXT, kwargs=dict(layers=_R50, groups=32, base_width=4)),
    card("resnext101_32x8d", reference="torchvision:resnext101_32x8d", **_RESNEXT, kwargs=dict(layers=_R101, groups=32, base_width=8)),
    card("resnext101_64x4d", reference="torchvision:resnext101_64x4d", **_RESNEXT, kwargs=dict(layers=_R101, groups=64, base_width=4)),
    card("wide_resnet50_2", reference="torchvision:wide_resnet50_2", **_WIDE, kwargs=dict(layers=_R50, base_width=128)),
    card("wide_resnet101_2", reference="torchvision:wide_resnet101_2", **_WIDE, kwargs=dict(layers=_R101, base_width=128)),
    card("seresnet50", reference="timm:seresnet50", **_SE, kwargs=dict(layers=_R50, se_reduction=16)),
    card("seresnet101", reference="timm:seresnet101", **_SE, kwargs=dict(layers=_R101, se_reduction=16)),
    card("seresnet152", reference="timm:seresnet152", **_SE, kwargs=dict(layers=_R152, se_reduction=16)),
    card("seresnext50_32x4d", reference="timm:seresnext50_32x4d", **_SE_X,
         kwargs=dict(layers=_R50, groups=32, base_width=4, se_reduction=16)),
    card("seresnext101_32x4d", reference="timm:seresnext101_32x4d", **_SE_X,
         kwargs=dict(layers=_R101, groups=32, base_width=4, se_reduction=16)),
    card("senet154", reference="timm:legacy_senet154", input_convs=("stem.conv1.conv",), **dict(_SE_X, extra_tricks=_SE_X["extra_tricks"] + ("deep_stem", "dropout")),
         notes="The original SENet-154: 64x4d SE bottlenecks whose first 1x1 has half the 3x3's width, "
               "a three-conv 3x3 stem, ceil-mode max pooling, 3x3 projection shortcuts, dropout 0.2.",
         kwargs=dict(layers=_R152, groups=64, base_width=4, reduce_ratio=0.5, stem="deep", stem_width=128,
                     stem_pool="max_ceil", shortcut_kernel=3, se_reduction=16, drop_rate=0.2)),
    cifar_card("resnet20", kwargs=_cifar(3)),
    cifar_card("resnet32", kwargs=_cifar(5)),
    cifar_card("resnet44", kwargs=_cifar(7)),
    cifar_card("resnet56", kwargs=_cifar(9)),
    cifar_card("resnet110", kwargs=_cifar(18)),
    cifar_card("resnet1202", kwargs=_cifar(200)),
])
