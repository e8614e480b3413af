"""Inception-v4 — Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", arXiv:1602.07261.

Inception-v3 made uniform: a deeper stem of plain and two-branch convolutions (Figure 3), then
four Inception-A blocks on the 35x35 grid, seven Inception-B on 17x17 and three Inception-C on
8x8, joined by Reduction-A and Reduction-B (Figure 9). The blocks are in
:mod:`archzoo.layers.inception_v4`; this file is the stem and the layout.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers.inception import ConcatBranches, inception_conv
from ..layers.inception_v4 import InceptionV4A, InceptionV4B, InceptionV4C, ReductionA, ReductionV4B
from ..registry import INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
from .base import Classifier, init_weights


def _stem(in_chans: int, c=inception_conv) -> nn.Sequential:
    """Figure 3: three 3x3 convolutions (the first strided, two unpadded), then three two-branch
    blocks that each concatenate a pooling or cheap branch with a convolution branch:
    299x299x3 -> 35x35x384."""
    return nn.Sequential(OrderedDict(
        conv1=c(in_chans, 32, 3, stride=2, padding=0),
        conv2=c(32, 32, 3, padding=0),
        conv3=c(32, 64, 3),
        mixed1=ConcatBranches(pool=nn.MaxPool2d(3, stride=2), b3x3=c(64, 96, 3, stride=2, padding=0)),
        mixed2=ConcatBranches(
            b3x3=nn.Sequential(c(160, 64, 1), c(64, 96, 3, padding=0)),
            b7x7x3=nn.Sequential(c(160, 64, 1), c(64, 64, (1, 7)), c(64, 64, (7, 1)), c(64, 96, 3, padding=0)),
        ),
        mixed3=ConcatBranches(b3x3=c(192, 192, 3, stride=2, padding=0), pool=nn.MaxPool2d(3, stride=2)),
    ))


class InceptionV4(Classifier):
    """Stem -> Inception-A x4 -> Reduction-A -> Inception-B x7 -> Reduction-B -> Inception-C x3
    -> global average pool -> dropout -> linear.

    Args:
        depths: Inception-A, -B and -C blocks per grid (4, 7, 3).
        drop_rate: dropout before the classifier (the paper keeps 0.8 of the units).
    """

    def __init__(
        self,
        depths: tuple[int, int, int] = (4, 7, 3),
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        c = inception_conv
        self.stem = _stem(in_chans, c)
        na, nb, nc = depths
        self.stages = nn.Sequential(
            nn.Sequential(*[InceptionV4A(384, c) for _ in range(na)]),
            nn.Sequential(ReductionA(384, 192, 224, 256, 384, c), *[InceptionV4B(1024, c) for _ in range(nb)]),
            nn.Sequential(ReductionV4B(1024, c), *[InceptionV4C(1536, c) for _ in range(nc)]),
        )
        self.feature_info = FeatureInfo([
            feature(64, 2, "stem.conv3"),
            feature(160, 4, "stem.mixed1"),
            feature(384, 8, "stages.0"),
            feature(1024, 16, "stages.1"),
            feature(1536, 32, "stages.2"),
        ])
        self.init_head(1536, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    family="inception_v4",
    year=2016,
    paper="arXiv:1602.07261 Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
          "(Szegedy et al.)",
    tricks=("inception_module", "factorized_convolution", "grid_size_reduction", "pointwise_conv", "batch_norm",
            "relu", "global_average_pooling", "dropout"),
)

register_variants(InceptionV4, [
    card("inception_v4", reference="timm:inception_v4", input_size=(3, 299, 299), min_input_size=(3, 75, 75),
         mean=INCEPTION_MEAN, std=INCEPTION_STD,
         notes="Widths of the released TensorFlow model (timm's port); dropout 0.2 before the classifier as in Figure 9.",
         kwargs=dict(depths=(4, 7, 3), drop_rate=0.2)),
])
