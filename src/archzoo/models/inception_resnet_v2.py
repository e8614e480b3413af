"""Inception-ResNet-v2 — Szegedy et al. 2016, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning", arXiv:1602.07261.

Inception blocks made residual (Figure 15): each block's concatenated branches are projected
back to the input width by a linear 1x1 convolution, scaled (0.17, 0.1, 0.2 on the three grids)
and added to the input. Ten Inception-ResNet-A blocks on 35x35, twenty -B on 17x17 and ten -C on
8x8 (the last one unscaled and unrectified), joined by Reduction-A and Reduction-B, then a 1x1
convolution to 1536 channels: Inception-v4's skeleton (:class:`~archzoo.models.inception_v4.InceptionNet`)
with other blocks. The released TensorFlow model, which timm ports and this file
follows, uses an Inception-v3 style stem ending in a four-branch block instead of the paper's
Figure 3 stem. The blocks are in :mod:`archzoo.layers.inception_v4`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

from ..layers.inception import ConcatBranches, inception_conv
from ..layers.inception_v4 import InceptionResNetA, InceptionResNetB, InceptionResNetC, ReductionA, ReductionResNetB
from ..registry import INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
from .inception_v4 import InceptionNet


def _stem(in_chans: int, c=inception_conv) -> nn.Sequential:
    """Three 3x3 convolutions (the first strided, two unpadded), max pool, 1x1, unpadded 3x3,
    max pool: 299x299x3 -> 35x35x192."""
    return nn.Sequential(OrderedDict(
        conv1=c(in_chans, 32, 3, stride=2, padding=0),
        conv2=c(32, 32, 3, padding=0),
        conv3=c(32, 64, 3),
        pool1=nn.MaxPool2d(3, stride=2),
        conv4=c(64, 80, 1),
        conv5=c(80, 192, 3, padding=0),
        pool2=nn.MaxPool2d(3, stride=2),
    ))


def _mixed_5b(c=inception_conv) -> ConcatBranches:
    """The stem's last block (35x35, 192 -> 320): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""
    return ConcatBranches(
        b1x1=c(192, 96, 1),
        b5x5=nn.Sequential(c(192, 48, 1), c(48, 64, 5)),
        b3x3dbl=nn.Sequential(c(192, 64, 1), c(64, 96, 3), c(96, 96, 3)),
        pool=nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), c(192, 64, 1)),
    )


class InceptionResNetV2(InceptionNet):
    """Stem -> Inception-ResNet-A x10 -> Reduction-A -> -B x20 -> Reduction-B -> -C x10 -> 1x1 conv
    -> global average pool -> dropout -> linear.

    Args:
        depths: Inception-ResNet-A, -B and -C blocks per grid (10, 20, 10; the last -C block is
            the unscaled, unrectified one).
        scales: residual scales of the A, B and C blocks.
        drop_rate: dropout before the classifier (the paper keeps 0.8 of the units).
    """

    def __init__(
        self,
        depths: tuple[int, int, int] = (10, 20, 10),
        scales: tuple[float, float, float] = (0.17, 0.1, 0.2),
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        c = inception_conv
        na, nb, nc = depths
        sa, sb, sc = scales
        stages = nn.Sequential(
            nn.Sequential(_mixed_5b(c), *[InceptionResNetA(320, sa, c) for _ in range(na)]),
            nn.Sequential(ReductionA(320, 256, 256, 384, 384, c), *[InceptionResNetB(1088, sb, c) for _ in range(nb)]),
            nn.Sequential(
                ReductionResNetB(1088, c),
                *[InceptionResNetC(2080, sc, conv_layer=c) for _ in range(nc - 1)],
                InceptionResNetC(2080, 1.0, apply_act=False, conv_layer=c),
                c(2080, 1536, 1),
            ),
        )
        super().__init__(_stem(in_chans, c), ((64, "conv3"), (192, "conv5")), stages, (320, 1088, 1536),
                         num_classes, drop_rate)


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv1.conv",),
    family="inception_resnet_v2",
    year=2016,
    paper="arXiv:1602.07261 Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
          "(Szegedy et al.)",
    tricks=("inception_module", "residual_inception", "residual_shortcut", "factorized_convolution", "grid_size_reduction",
            "pointwise_conv", "batch_norm", "relu", "global_average_pooling", "dropout"),
)

register_variants(InceptionResNetV2, [
    card("inception_resnet_v2", reference="timm:inception_resnet_v2", input_size=(3, 299, 299), min_input_size=(3, 75, 75),
         mean=INCEPTION_MEAN, std=INCEPTION_STD,
         notes="The released TensorFlow model (timm's port): an Inception-v3 style stem instead of the paper's Figure 3 "
               "stem, 320/1088/2080 channels on the three grids; dropout 0.2 before the classifier.",
         kwargs=dict(depths=(10, 20, 10), drop_rate=0.2)),
])
