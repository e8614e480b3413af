"""Pre-activation ResNet — He et al. 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027.

What it added over ResNet: batch norm and ReLU move *before* each convolution
(``x + conv(relu(bn(x)))``), so nothing sits on the shortcut path between blocks and the signal
propagates directly from any block to any other. That let the authors train a 1001-layer network
on CIFAR-10. The network ends with one more bn-relu before the pooling, since the last block's
output is not normalised.

ImageNet variants follow timm's ``resnetv2_50/101/152`` (7x7 stem without norm, max pool,
bottleneck stages, stride on the 3x3); CIFAR variants follow the paper's section 4: a 3x3 stem
with 16 channels and three stages, basic blocks for ResNet-110, bottlenecks (4x expansion) for
ResNet-164 and ResNet-1001, 1x1 projection shortcuts where the shape changes.

Wide ResNets (Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146) are the
same CIFAR network made shallow and wide: WRN-d-k has (d - 4) / 6 basic blocks per stage and
16k, 32k, 64k channels, optionally with dropout between a block's two convolutions.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import NormAct, PreActBasicBlock, PreActBottleneck, linear_drop_path, make_shortcut
from ..registry import CIFAR_MEAN, CIFAR_STD, INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
from .base import Classifier, init_weights


class PreActResNet(Classifier):
    """Stem conv (no norm) -> stages of pre-activation blocks -> bn-relu -> pool -> linear.

    Args:
        block: ``"basic"`` or ``"bottleneck"`` (output ``4 * planes``).
        layers, planes: blocks and base width per stage.
        stem: ``"7x7"`` (strided 7x7 conv + max pool, ImageNet) or ``"3x3"`` (CIFAR).
        stem_width: channels of the stem conv.
        block_dropout: dropout between the two convolutions of a basic block (Wide ResNets).
        drop_path_rate: stochastic depth of the last block, linear in depth (timm's rule).

    The last feature map is the final bn-relu's output (``norm``), as ``forward_features`` returns
    it, so that it is normalised like every family's last map; earlier maps are the raw stage
    outputs (there is no norm between pre-activation stages).
    """

    feature_chain = ("stem", "stages", "norm")

    def __init__(
        self,
        block: str = "bottleneck",
        layers: tuple[int, ...] = (3, 4, 6, 3),
        planes: tuple[int, ...] = (64, 128, 256, 512),
        stem: str = "7x7",
        stem_width: int = 64,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        block_dropout: float = 0.0,
    ):
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        self.stem = nn.Sequential()
        if stem == "7x7":
            self.stem.conv = nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False)
            self.stem.pool = nn.MaxPool2d(3, stride=2, padding=1)
            stride = 2
        elif stem == "3x3":
            self.stem.conv = nn.Conv2d(in_chans, stem_width, 3, 1, 1, bias=False)
            stride = 1
        else:
            raise ValueError(f"stem must be '7x7' or '3x3', got {stem!r}")
        info = [feature(stem_width, stride, "stem.conv")]
        stride *= 2 if stem == "7x7" else 1

        expansion = 4 if block == "bottleneck" else 1
        total, idx = sum(layers), 0
        in_chs, stages = stem_width, []
        for stage_idx, (n, p) in enumerate(zip(layers, planes)):
            stage_stride = 1 if stage_idx == 0 else 2
            out_chs, blocks = p * expansion, []
            for i in range(n):
                s = stage_stride if i == 0 else 1
                kwargs = dict(
                    stride=s,
                    shortcut=make_shortcut("B", in_chs, out_chs, s, norm_layer=None),
                    drop_path=linear_drop_path(drop_path_rate, idx, total),
                )
                if block == "basic":
                    blocks.append(PreActBasicBlock(in_chs, out_chs, dropout=block_dropout, **kwargs))
                elif block_dropout:
                    raise ValueError("block_dropout is for basic blocks (Wide ResNets)")
                else:
                    blocks.append(PreActBottleneck(in_chs, out_chs, p, **kwargs))
                in_chs, idx = out_chs, idx + 1
            stride *= stage_stride
            stages.append(nn.Sequential(*blocks))
            info.append(feature(out_chs, stride, f"stages.{stage_idx}"))
        self.stages = nn.Sequential(*stages)
        self.norm = NormAct(in_chs)  # the last block's output is not normalised yet
        info[-1] = feature(in_chs, stride, "norm")
        self.feature_info = FeatureInfo(info)
        self.init_head(in_chs, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.stages(self.stem(x)))


card = family_card(
    input_convs=("stem.conv",),
    arch="preact_resnet",  # also the CIFAR Wide ResNets, whose family is "wide_resnet"
    family="preact_resnet",
    year=2016,
    paper="arXiv:1603.05027 Identity Mappings in Deep Residual Networks (He et al.)",
    tricks=("residual_shortcut", "preactivation", "projection_shortcut", "batch_norm", "relu", "global_average_pooling"),
)
cifar_card = partial(
    card,
    input_size=(3, 32, 32),
    min_input_size=(3, 8, 8),
    dataset="CIFAR-10",
    mean=CIFAR_MEAN,
    std=CIFAR_STD,
    num_classes=10,
    notes="CIFAR network of the paper's section 4: 3x3 stem with 16 channels, three stages, 1x1 projection "
          "shortcuts where the shape changes.",
)


def _cifar(block: str, n: int) -> dict:
    planes = (16, 32, 64)
    return dict(block=block, layers=(n, n, n), planes=planes, stem="3x3", stem_width=16)


def _wide(depth: int, k: int) -> dict:
    """WRN-depth-k: (depth - 4) / 6 basic blocks per stage, widths 16k / 32k / 64k."""
    return dict(block="basic", layers=((depth - 4) // 6,) * 3, planes=(16 * k, 32 * k, 64 * k), stem="3x3", stem_width=16)


wide_card = partial(
    cifar_card,
    family="wide_resnet",
    paper="arXiv:1605.07146 Wide Residual Networks (Zagoruyko & Komodakis)",
    extra_tricks=("widening",),
    notes="CIFAR Wide ResNet WRN-d-k: pre-activation basic blocks, (d - 4) / 6 per stage, 16k/32k/64k channels; "
          "the paper's dropout between the convolutions is block_dropout=0.3 (off by default).",
)

_NOTE_TIMM = "Matches timm's resnetv2 (final conv classifier stored as a linear layer here)."
_TIMM_DATA = dict(mean=INCEPTION_MEAN, std=INCEPTION_STD)  # timm's resnetv2 weights take images scaled to [-1, 1]

register_variants(PreActResNet, [
    card("preact_resnet50", reference="timm:resnetv2_50", **_TIMM_DATA, extra_tricks=("bottleneck",), notes=_NOTE_TIMM,
         kwargs=dict(layers=(3, 4, 6, 3))),
    card("preact_resnet101", reference="timm:resnetv2_101", **_TIMM_DATA, extra_tricks=("bottleneck",), notes=_NOTE_TIMM,
         kwargs=dict(layers=(3, 4, 23, 3))),
    card("preact_resnet152", reference="timm:resnetv2_152", **_TIMM_DATA, extra_tricks=("bottleneck",), notes=_NOTE_TIMM,
         kwargs=dict(layers=(3, 8, 36, 3))),
    cifar_card("preact_resnet110", kwargs=_cifar("basic", 18)),
    cifar_card("preact_resnet164", extra_tricks=("bottleneck",), kwargs=_cifar("bottleneck", 18)),
    cifar_card("preact_resnet1001", extra_tricks=("bottleneck",), kwargs=_cifar("bottleneck", 111)),
    wide_card("wrn16_4", kwargs=_wide(16, 4)),
    wide_card("wrn16_8", kwargs=_wide(16, 8)),
    wide_card("wrn28_10", kwargs=_wide(28, 10)),
    wide_card("wrn40_4", kwargs=_wide(40, 4)),
])
