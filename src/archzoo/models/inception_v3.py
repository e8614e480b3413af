"""Inception-v3 — Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision",
arXiv:1512.00567.

GoogLeNet's multi-branch design, made cheaper and deeper by rules the paper states: factorize
large convolutions (5x5 into two 3x3, n x n into 1 x n and n x 1), reduce the grid with parallel
stride-2 convolution and pooling branches instead of a pooling bottleneck, batch norm after
every convolution, a stem of 3x3 convolutions, and one auxiliary classifier (on the 17x17 grid)
that the paper reads as a regulariser. The blocks are :mod:`archzoo.layers.factorized_inception`;
the layout and widths are those of Google's released model (torchvision's and timm's ports):

    stem: 3x3/2, 3x3, 3x3, pool, 1x1, 3x3, pool         (299 -> 35)
    3 x InceptionA (35x35) -> InceptionB (to 17x17) -> 4 x InceptionC (7x7 factorized)
    -> [auxiliary head] -> ReductionB (to 8x8) -> 2 x InceptionE -> average pool -> dropout -> fc

The auxiliary head runs in training mode only (``AuxLogits(logits, aux=(aux,))``, see
:class:`~archzoo.models.googlenet.AuxNet`); on inputs smaller than 299 its first pooling
averages to the 5x5 grid its 5x5 convolution needs (exact at 299 and up). Feature maps follow
timm's ``feature_info``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import (
    AuxClassifier,
    AvgPoolAtLeast,
    InceptionA,
    InceptionB,
    InceptionC,
    InceptionE,
    ReductionB,
    inception_conv,
)
from ..registry import family_card, register_variants
from .googlenet import AuxNet


def inception_v3_aux(in_chs: int, num_classes: int) -> AuxClassifier:
    """5x5/3 average pool -> 1x1 conv (128) -> 5x5 conv (768) -> global average -> fc."""
    convs = nn.Sequential(inception_conv(in_chs, 128, 1), inception_conv(128, 768, 5, padding=0))
    return AuxClassifier(AvgPoolAtLeast(5, stride=3, min_size=5), convs, 768, num_classes, global_pool=True)


class InceptionV3(AuxNet):
    """See the module docstring.

    Args:
        aux_logits: build the auxiliary classifier (used in training mode only).
        transform_input: re-normalise ImageNet-normalised input to [-1, 1], as torchvision's
            pretrained weights (ported from Google's) need.
        drop_rate: dropout before the classifier (0.5, as in torchvision's port).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        aux_logits: bool = True,
        transform_input: bool = False,
    ):
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError("transform_input needs in_chans=3")
        self.transform_input = transform_input
        c = inception_conv
        self.features = nn.Sequential(OrderedDict([
            ("conv1a", c(in_chans, 32, 3, stride=2, padding=0)),
            ("conv2a", c(32, 32, 3, padding=0)),
            ("conv2b", c(32, 64, 3)),
            ("pool1", nn.MaxPool2d(3, stride=2)),
            ("conv3b", c(64, 80, 1)),
            ("conv4a", c(80, 192, 3, padding=0)),
            ("pool2", nn.MaxPool2d(3, stride=2)),
            ("mixed5b", InceptionA(192, pool_chs=32, conv_layer=c)),
            ("mixed5c", InceptionA(256, pool_chs=64, conv_layer=c)),
            ("mixed5d", InceptionA(288, pool_chs=64, conv_layer=c)),
            ("mixed6a", InceptionB(288, conv_layer=c)),
            ("mixed6b", InceptionC(768, mid_chs=128, conv_layer=c)),
            ("mixed6c", InceptionC(768, mid_chs=160, conv_layer=c)),
            ("mixed6d", InceptionC(768, mid_chs=160, conv_layer=c)),
            ("mixed6e", InceptionC(768, mid_chs=192, conv_layer=c)),
            ("mixed7a", ReductionB(768, conv_layer=c)),
            ("mixed7b", InceptionE(1280, conv_layer=c)),
            ("mixed7c", InceptionE(2048, conv_layer=c)),
        ]))
        self.feature_info = FeatureInfo([
            feature(64, 2, "features.conv2b"),
            feature(192, 4, "features.conv4a"),
            feature(288, 8, "features.mixed5d"),
            feature(768, 16, "features.mixed6e"),
            feature(2048, 32, "features.mixed7c"),
        ])
        self.aux_taps = ("mixed6e",)
        self.aux_heads = nn.ModuleList([inception_v3_aux(768, num_classes)]) if aux_logits else None
        self.init_head(2048, num_classes, drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated normal weights (std 0.1; 0.01 for the auxiliary 5x5 conv, 0.001 for its fc), as in
        torchvision's port; unit norms, zero biases."""
        special = {}
        if self.aux_heads is not None:
            special = {self.aux_heads[0].convs[1].conv: 0.01, self.aux_heads[0].fc: 0.001}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                std = special.get(m, 0.1)
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


card = family_card(
    input_convs=("features.conv1a.conv",),
    heads=("head.fc", "aux_heads.0.fc"),
    family="inception_v3",
    year=2015,
    paper="arXiv:1512.00567 Rethinking the Inception Architecture for Computer Vision (Szegedy et al.)",
    tricks=("inception_module", "factorized_convolution", "grid_size_reduction", "deep_stem", "batch_norm",
            "pointwise_conv", "auxiliary_classifier", "global_average_pooling", "relu", "dropout"),
)

register_variants(InceptionV3, [
    card("inception_v3", reference="torchvision:inception_v3", input_size=(3, 299, 299), min_input_size=(3, 75, 75),
         notes="Google's released layout (torchvision's and timm's ports; one converter serves both). One auxiliary "
               "classifier on the 17x17 grid in training mode: the model returns AuxLogits(logits, aux=(aux,)); "
               "aux_logits=False builds without it. Below 299x299 the auxiliary head's first pooling averages to "
               "the 5x5 grid it needs (torchvision's head fails there). torchvision's pretrained inception_v3 weights "
               "need transform_input=True with ImageNet-normalised input (this card's mean/std), or equivalently "
               "transform_input=False with mean = std = 0.5."),
])
