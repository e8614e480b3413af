"""Inception-v4 — Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", arXiv:1602.07261.

Inception-v3 made uniform: a deeper stem of plain and two-branch convolutions (Figure 3), then
four Inception-A blocks on the 35x35 grid, seven Inception-B on 17x17 and three Inception-C on
8x8, joined by Reduction-A and Reduction-B (Figure 9). The blocks are in
:mod:`archzoo.layers.inception_v4`; this file is the stem, the layout and :class:`InceptionNet`,
the skeleton Inception-ResNet-v2 shares.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers.factorized_inception import ReductionB
from ..layers.inception import ConcatBranches, inception_conv
from ..layers.inception_v4 import InceptionV4A, InceptionV4B, InceptionV4C, ReductionA
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


class InceptionNet(Classifier):
    """Stem -> one stage per grid (35x35, 17x17, 8x8) -> global average pool -> dropout -> linear:
    the skeleton Inception-v4 and Inception-ResNet-v2 share (they differ in the stem and the blocks).

    Args:
        stem: the stem (an ``nn.Sequential``); stem_maps: ``(channels, child name)`` of its two
            feature maps, at strides 2 and 4.
        stages: the three grids' stages (an ``nn.Sequential``), at strides 8, 16, 32, with
            ``widths`` output channels.
    """

    feature_chain = ("stem", "stages")

    def __init__(self, stem: nn.Sequential, stem_maps: tuple[tuple[int, str], tuple[int, str]], stages: nn.Sequential,
                 widths: tuple[int, int, int], num_classes: int, drop_rate: float):
        super().__init__()
        self.stem, self.stages = stem, stages
        (c2, m2), (c4, m4) = stem_maps
        self.feature_info = FeatureInfo([
            feature(c2, 2, f"stem.{m2}"),
            feature(c4, 4, f"stem.{m4}"),
            *[feature(w, 8 * 2**i, f"stages.{i}") for i, w in enumerate(widths)],
        ])
        self.init_head(widths[-1], num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class InceptionV4(InceptionNet):
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
        c = inception_conv
        na, nb, nc = depths
        stages = nn.Sequential(
            nn.Sequential(*[InceptionV4A(384, c) for _ in range(na)]),
            nn.Sequential(ReductionA(384, 192, 224, 256, 384, c), *[InceptionV4B(1024, c) for _ in range(nb)]),
            nn.Sequential(ReductionB(1024, b3x3=(192, 192), b7x7x3=(256, 256, 320, 320), conv_layer=c),
                          *[InceptionV4C(1536, c) for _ in range(nc)]),
        )
        super().__init__(_stem(in_chans, c), ((64, "conv3"), (160, "mixed1")), stages, (384, 1024, 1536),
                         num_classes, drop_rate)


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv1.conv",),
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
