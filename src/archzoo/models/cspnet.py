"""CSPNet — Wang et al. 2019, "CSPNet: A New Backbone that can Enhance Learning Capability of CNN",
arXiv:1911.11929.

Added the cross-stage partial stage: a stage's input is split along channels, only one part
goes through the stage's blocks while the other crosses the stage, and a 1x1 transition fuses the
concatenation. That removes duplicated gradient information and about half of each stage's cost.
Applied to ResNet-50 (CSPResNet-50: ResNet bottlenecks) and to YOLOv3's Darknet-53 (CSPDarknet-53:
Darknet residual blocks, Redmon & Farhadi 2018, arXiv:1804.02767), both with leaky ReLU.

The stage layout follows timm's ``cspnet.py`` (our reference): each stage is an optional strided
3x3 down-sampling conv, a 1x1 expansion conv whose output is split in halves, the blocks on the
second half, a 1x1 transition on it, and a 1x1 transition after the concatenation.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import Bottleneck, ConvNormAct, CrossStagePartial, DarkBlock, linear_drop_path
from ..registry import family_card, register_variants
from .base import Classifier, init_weights


def _per_stage(value, n: int) -> tuple:
    """A per-stage setting: a scalar for every stage, or a tuple whose last value repeats."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return (values + values[-1:] * n)[:n]


class CSPNet(Classifier):
    """Stem -> cross-stage partial stages -> global average pool -> linear.

    Args:
        depths: blocks per stage; widths: output channels per stage.
        strides: stride of each stage's down-sampling conv (``1``: none).
        block: ``"bottle"`` (ResNet bottleneck, CSPResNet) or ``"dark"`` (Darknet block, CSPDarknet).
        expand_ratios: ``conv_exp`` width relative to the stage width (split in halves).
        block_ratios: block width relative to the stage width.
        bottle_ratios: a block's inner width relative to its own width.
        down_growth: the down-sampling conv already widens to the stage width (CSPDarknet).
        cross_linear: no activation after the expansion conv (CSPResNet).
        stem_width, stem_kernel, stem_stride, stem_pool: one conv-BN-act, optionally 3x3/2 max pooling.
        drop_rate: dropout before the classifier; drop_path_rate: stochastic depth of the last block,
            linear in depth (timm's rule, :func:`~archzoo.layers.linear_drop_path`).
        zero_init_last: start each residual branch's last norm at zero (as timm does).
    """

    feature_chain = ("stem", "stages")

    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 5, 2),
        widths: tuple[int, ...] = (128, 256, 512, 1024),
        strides: int | tuple[int, ...] = (1, 2),
        block: str = "bottle",
        expand_ratios: float | tuple[float, ...] = 2.0,
        block_ratios: float | tuple[float, ...] = 1.0,
        bottle_ratios: float | tuple[float, ...] = 0.5,
        down_growth: bool = False,
        cross_linear: bool = True,
        stem_width: int = 64,
        stem_kernel: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
    ):
        super().__init__()
        if block not in ("bottle", "dark"):
            raise ValueError(f"block must be 'bottle' or 'dark', got {block!r}")
        n = len(depths)
        strides, expand_ratios, block_ratios, bottle_ratios = (
            _per_stage(v, n) for v in (strides, expand_ratios, block_ratios, bottle_ratios)
        )
        act = nn.LeakyReLU
        self.stem = nn.Sequential()
        self.stem.conv1 = ConvNormAct(in_chans, stem_width, stem_kernel, stride=stem_stride, act_layer=act)
        stride = stem_stride
        # timm's convention: a map is listed where the next layer down-samples, and the last one
        info = [feature(stem_width, stride, "stem.conv1")] if stem_pool or strides[0] != 1 else []
        if stem_pool:
            self.stem.pool = nn.MaxPool2d(3, stride=2, padding=1)
            stride *= 2

        chs, total, k = stem_width, sum(depths), 0
        stages = []
        for i in range(n):
            out_chs = widths[i]
            exp_chs = round(out_chs * expand_ratios[i])
            block_chs = round(out_chs * block_ratios[i])
            mid_chs = round(block_chs * bottle_ratios[i])
            blocks = []
            for j in range(depths[i]):
                dp = linear_drop_path(drop_path_rate, k, total)
                in_chs = exp_chs // 2 if j == 0 else block_chs
                if block == "bottle":
                    blocks.append(Bottleneck(in_chs, block_chs, mid_chs, drop_path=dp, act_layer=act))
                else:
                    blocks.append(DarkBlock(in_chs, block_chs, mid_chs, act_layer=act, drop_path=dp))
                k += 1
            stages.append(CrossStagePartial(
                chs, out_chs, exp_chs, blocks, stride=strides[i], down_chs=out_chs if down_growth else chs,
                block_chs=block_chs, cross_linear=cross_linear, act_layer=act,
            ))
            chs, stride = out_chs, stride * strides[i]
            if i == n - 1 or strides[i + 1] != 1:
                info.append(feature(out_chs, stride, f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.feature_info = FeatureInfo(info)
        self.init_head(chs, num_classes, drop_rate)
        init_weights(self)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.conv3.bn.weight)
                elif isinstance(m, DarkBlock):
                    nn.init.zeros_(m.conv2.bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv1.conv",),
    family="cspnet",
    year=2019,
    paper="arXiv:1911.11929 CSPNet: A New Backbone that can Enhance Learning Capability of CNN (Wang et al.)",
    tricks=("cross_stage_partial", "residual_shortcut", "leaky_relu", "batch_norm", "pointwise_conv",
            "global_average_pooling"),
    input_size=(3, 256, 256),
)

register_variants(CSPNet, [
    card("cspresnet50", reference="timm:cspresnet50", extra_tricks=("bottleneck",),
         notes="ResNet-50 layout (3, 3, 5, 2 bottlenecks) in cross-stage partial stages, as timm builds it: "
               "the 1x1 expansion doubles the width and is linear, the first stage does not down-sample.",
         kwargs=dict(depths=(3, 3, 5, 2), widths=(128, 256, 512, 1024), strides=(1, 2), block="bottle",
                     expand_ratios=2.0, block_ratios=1.0, bottle_ratios=0.5, cross_linear=True,
                     stem_width=64, stem_kernel=7, stem_stride=2, stem_pool=True)),
    card("cspdarknet53", reference="timm:cspdarknet53",
         notes="YOLOv3's Darknet-53 (1, 2, 8, 8, 4 Darknet blocks) in cross-stage partial stages, as timm builds it: "
               "the first stage expands 2x with half-width blocks inside, later stages keep the width and "
               "use half-width blocks on each half.",
         kwargs=dict(depths=(1, 2, 8, 8, 4), widths=(64, 128, 256, 512, 1024), strides=2, block="dark",
                     expand_ratios=(2.0, 1.0), block_ratios=(1.0, 0.5), bottle_ratios=(0.5, 1.0),
                     down_growth=True, cross_linear=False, stem_width=32, stem_kernel=3, stem_stride=1,
                     stem_pool=False)),
])
