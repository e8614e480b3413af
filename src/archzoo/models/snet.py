"""SNet — the backbones of ThunderNet: Qin et al. 2019, "ThunderNet: Towards Real-time Generic
Object Detection on Mobile Devices", arXiv:1903.11752 (section 3.1, Table 1).

ShuffleNetV2 (Ma et al. 2018, arXiv:1807.11164) re-balanced for detection. A detector needs a
large receptive field (to see context) and both shallow features (to localise) and deep ones (to
classify); ShuffleNetV2 has a small receptive field and spends its budget on a 1024-wide conv5
that detection barely uses. SNet changes two things:

* every 3x3 depthwise convolution becomes 5x5: a larger receptive field for few more
  multiply-adds (depthwise convolutions are a small share of the cost);
* the widths are re-balanced towards the early stages: SNet49 compresses conv5 to 512 channels,
  SNet146 and SNet535 drop conv5 and widen stages 2-4 instead.

Table 1 of the paper (repeats 4, 8, 4; the first unit of each stage has stride 2)::

               conv1  stage2  stage3  stage4  conv5   MFLOPs (224x224)
    SNet49       24      60     120     240    512      49
    SNet146      24     132     264     528     -      146
    SNet535      48     248     496     992     -      535

Feature maps: conv1 (stride 2), the max pool (4), the three stages (8, 16, 32) and, for SNet49,
conv5 (32): the deepest stride-32 map is what ThunderNet's context enhancement module reads.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import ConvNormAct, OutputStride, ShuffleV2Block, create_norm_layer
from ..registry import family_card, register_variants
from .base import Classifier, init_weights

# Table 1: stem (conv1) width, the three stages' widths, conv5's width (None: no conv5)
SNET = {
    "snet49": dict(stem_chs=24, widths=(60, 120, 240), conv5_chs=512),
    "snet146": dict(stem_chs=24, widths=(132, 264, 528), conv5_chs=None),
    "snet535": dict(stem_chs=48, widths=(248, 496, 992), conv5_chs=None),
}


class SNet(Classifier):
    """conv1 3x3/2 -> max pool 3x3/2 -> three stages of ShuffleNetV2 units -> [conv5 1x1] -> pool -> FC.

    Args:
        stem_chs, widths, conv5_chs: Table 1's widths (conv5 is left out when ``conv5_chs`` is None).
        repeats: units per stage, the first of each with stride 2 (ShuffleNetV2's 4, 8, 4).
        kernel_size: of every depthwise convolution (5 in SNet; 3 gives ShuffleNetV2).
        proj_chs: ``"input"`` (the authors' code: a stage's first unit keeps its input width in the
            projection branch) or ``"half"`` (an even split, torchvision's ShuffleNetV2);
            see :class:`~archzoo.layers.ShuffleV2Block`.
        drop_rate: dropout before the classifier.
        output_stride: 8 or 16 dilates the later depthwise convolutions instead of striding.
        norm_layer: ``"batchnorm"``, ``"frozen_batchnorm"`` or ``"groupnorm"``.
    """

    feature_chain = ("stem", "pool", "stages", "conv5")

    def __init__(
        self,
        stem_chs: int = 24,
        widths: tuple[int, int, int] = (132, 264, 528),
        conv5_chs: int | None = None,
        repeats: tuple[int, int, int] = (4, 8, 4),
        kernel_size: int = 5,
        proj_chs: str = "input",
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        output_stride: int | None = None,
        norm_layer: str = "batchnorm",
    ):
        super().__init__()
        if len(widths) != len(repeats) or min(repeats) < 1:
            raise ValueError(f"widths {tuple(widths)} and repeats {tuple(repeats)} must give every stage at least one unit")
        if proj_chs not in ("input", "half"):
            raise ValueError(f"proj_chs must be 'input' or 'half', got {proj_chs!r}")
        norm = create_norm_layer(norm_layer)
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=2, norm_layer=norm)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        info = [feature(stem_chs, 2, "stem"), feature(stem_chs, 4, "pool")]
        dilate = OutputStride(output_stride, stride=4)
        stages, in_chs = [], stem_chs
        for i, (out_chs, n) in enumerate(zip(widths, repeats)):
            units = []
            for j in range(n):
                stride, dilation = dilate(2) if j == 0 else (1, dilate.dilation)
                units.append(ShuffleV2Block(in_chs, out_chs, stride, kernel_size, dilation=dilation, downsample=j == 0,
                                            norm_layer=norm,
                                            proj_chs=in_chs if proj_chs == "input" else out_chs // 2))
                in_chs = out_chs
            stages.append(nn.Sequential(*units))
            info.append(feature(out_chs, dilate.stride, f"stages.{i}"))
        dilate.check(f"SNet (widths {tuple(widths)})")
        self.stages = nn.Sequential(*stages)
        if conv5_chs:
            self.conv5 = ConvNormAct(in_chs, conv5_chs, 1, norm_layer=norm)
            info.append(feature(conv5_chs, dilate.stride, "conv5"))
            in_chs = conv5_chs
        else:
            self.conv5 = nn.Identity()
        self.feature_info = FeatureInfo(info)
        self.init_head(in_chs, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.stages(self.pool(self.stem(x))))


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv",),
    family="snet",
    year=2019,
    paper="arXiv:1903.11752 ThunderNet: Towards Real-time Generic Object Detection on Mobile Devices (Qin et al.)",
    tricks=("channel_split", "channel_shuffle", "depthwise_separable_conv", "large_kernel_depthwise", "pointwise_conv",
            "batch_norm", "relu", "overlapping_pooling", "global_average_pooling"),
)
_NOTE = ("Table 1 of ThunderNet: ShuffleNetV2 units with 5x5 depthwise convolutions, repeats 4/8/4, {}. "
         "Designed as a detection backbone (thundernet_{}); no reference implementation to convert from.")

register_variants(SNet, [
    card("snet49", kwargs=SNET["snet49"], notes=_NOTE.format("widths 24/60/120/240 and conv5 compressed to 512", "snet49")),
    card("snet146", kwargs=SNET["snet146"], notes=_NOTE.format("widths 24/132/264/528 and no conv5", "snet146")),
    card("snet535", kwargs=SNET["snet535"], notes=_NOTE.format("widths 48/248/496/992 and no conv5", "snet535")),
])
