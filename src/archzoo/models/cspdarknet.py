"""CSPDarknet with C2f stages and SPPF — the backbone of the anchor-free YOLO of 2023 (Jocher et al.,
Ultralytics YOLOv8, 2023, https://github.com/ultralytics/ultralytics), as a zoo classifier so that
any detector can use it.

It is CSPNet's cross-stage partial idea (Wang et al. 2019, arXiv:1911.11929) in the "C2f" form:
a 1x1 conv splits its output in two halves; the second half goes through ``n`` residual 3x3-3x3
bottlenecks, and *every* intermediate output (both halves and each bottleneck's) is concatenated
and fused by a 1x1 conv -- more gradient paths than the C3 stage of YOLOv5 at the same cost. The
last stage ends with SPPF (YOLOv5): three chained 5x5 max-pools, concatenated, which equals the
9x9 and 13x13 pools of spatial pyramid pooling (He et al. 2014, arXiv:1406.4729) at a fraction of
the cost. Convolutions are conv-BN-SiLU with Ultralytics' batch-norm settings (eps 1e-3,
momentum 0.03).

A network of scale ``(depth, width, max_channels)`` has stage widths
``ceil8(min(c, max_channels) * width)`` for ``c`` in 64, 128, 256, 512, 1024 and C2f depths
``max(round(n * depth), 1)`` for ``n`` in 3, 6, 6, 3 (YOLOv8-n: 0.33, 0.25, 1024; -s: 0.33, 0.50, 1024).
The classifier's head is global average pooling and a linear layer (YOLOv8-cls puts a 1280-wide
1x1 conv before it; the detector never uses the head).
"""

from __future__ import annotations


import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import create_norm_layer
from ..layers.c2f import C2f, SPPF, scale_depth, scale_width, yolo_conv
from ..registry import family_card, register_variants
from .base import Classifier


class CSPDarknetC2f(Classifier):
    """Stem conv (3x3/2) -> four stages (3x3/2 conv, C2f; the last also SPPF) -> pool -> linear.

    Args:
        depth, width, max_channels: the scale (see the module doc).
        norm_layer: ``"batchnorm"`` (Ultralytics' eps 1e-3, momentum 0.03), ``"frozen_batchnorm"``
            or ``"groupnorm"``.
    """

    feature_chain = ("stem", "stages")

    def __init__(self, depth: float = 0.33, width: float = 0.25, max_channels: int = 1024, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.0, norm_layer: str = "batchnorm"):
        super().__init__()
        norm = create_norm_layer(norm_layer, eps=1e-3, momentum=0.03)
        conv = yolo_conv(norm)
        w = [scale_width(c, width, max_channels) for c in (64, 128, 256, 512, 1024)]
        self.stem = conv(in_chans, w[0], 3, 2)
        info, stages = [feature(w[0], 2, "stem")], []
        for i, n in enumerate((3, 6, 6, 3)):
            stage = nn.Sequential()
            stage.add_module("conv", conv(w[i], w[i + 1], 3, 2))
            stage.add_module("c2f", C2f(w[i + 1], w[i + 1], scale_depth(n, depth), shortcut=True, norm_layer=norm))
            if i == 3:
                stage.add_module("sppf", SPPF(w[i + 1], w[i + 1], 5, norm_layer=norm))
            stages.append(stage)
            info.append(feature(w[i + 1], 2 ** (i + 2), f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.feature_info = FeatureInfo(info)
        self.init_head(w[4], num_classes, drop_rate)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


card = family_card(
    family="cspdarknet",
    year=2023,
    paper="Jocher et al., Ultralytics YOLOv8 (2023), https://github.com/ultralytics/ultralytics; "
          "C2f cross-stage partial stages after CSPNet (Wang et al. 2019)",
    tricks=("cross_stage_partial", "residual_shortcut", "swish", "batch_norm", "pointwise_conv",
            "global_average_pooling"),
    input_convs=("stem.conv",),
    input_size=(3, 224, 224),
    min_input_size=(3, 32, 32),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
)

register_variants(CSPDarknetC2f, [
    card("cspdarknet_v8n", kwargs=dict(depth=0.33, width=0.25, max_channels=1024),
         notes="The YOLOv8-n backbone (C2f stages, SPPF at the end) with a pool + linear classifier "
               "(YOLOv8n-cls adds a 1280-wide 1x1 conv before it). Images are scaled to 0..1 only."),
    card("cspdarknet_v8s", kwargs=dict(depth=0.33, width=0.50, max_channels=1024),
         notes="The YOLOv8-s backbone (C2f stages, SPPF at the end) with a pool + linear classifier "
               "(YOLOv8s-cls adds a 1280-wide 1x1 conv before it). Images are scaled to 0..1 only."),
])
