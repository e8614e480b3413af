"""GoogLeNet (Inception-v1) — Szegedy et al. 2014, "Going Deeper with Convolutions", arXiv:1409.4842.

22 layers deep at 1.5 billion multiply-adds: nine Inception modules (parallel 1x1, 3x3, 5x5 and
pooling branches, concatenated, with 1x1 convolutions reducing the width before the expensive
ones), global average pooling instead of fully-connected layers, and two auxiliary classifiers
on intermediate maps (after 4a and 4d) that add 0.3-weighted losses during training.

The layout is torchvision's port of Google's weights, which differs from the paper: batch norm
(eps 1e-3) after every convolution, no local response norm, and a 3x3 instead of 5x5 kernel in
the "5x5" branch (pytorch/vision#906; ``large_kernel=5`` restores the paper's).

:class:`AuxNet` is the machinery Inception-v3 shares: the body is one ``nn.Sequential`` of named
layers that ``forward_features`` runs layer by layer, feeding the auxiliary heads on the way;
in training mode ``forward`` returns :class:`~archzoo.models.base.AuxLogits` ``(logits,
aux=(aux1, aux2))``, in eval mode a tensor. ``aux_logits=False`` builds without them.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import AuxClassifier, InceptionModule, InceptionRange, inception_conv
from ..registry import family_card, register_variants
from .base import AuxLogits, Classifier


class AuxNet(Classifier):
    """A classifier whose body ``self.features`` feeds auxiliary heads ``self.aux_heads[i]`` with the
    output of layer ``self.aux_taps[i]`` during training.

    Subclasses set ``transform_input`` first, then build ``features``, ``aux_heads`` (or ``None``),
    ``aux_taps`` and the head. A backbone runs ``input_transform`` and ``features``, never the
    auxiliary heads.
    """

    features: nn.Sequential
    aux_heads: nn.ModuleList | None
    aux_taps: tuple[str, ...]
    feature_chain = ("input_transform", "features")

    @property
    def transform_input(self) -> bool:
        """Whether the first layer re-normalises ImageNet-normalised input to Inception's [-1, 1]."""
        return isinstance(self.input_transform, InceptionRange)

    @transform_input.setter
    def transform_input(self, value: bool) -> None:
        self.input_transform = InceptionRange() if value else nn.Identity()

    def _run(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        x = self.input_transform(x)
        aux = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if with_aux and name in self.aux_taps:
                aux.append(self.aux_heads[self.aux_taps.index(name)](x))
        return x, tuple(aux)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, with_aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxLogits:
        with_aux = self.training and self.aux_heads is not None
        x, aux = self._run(x, with_aux)
        logits = self.forward_head(x)
        return AuxLogits(logits, aux) if with_aux else logits

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh final layer for the main and auxiliary heads; ``0`` removes them (aux heads too)."""
        super().reset_classifier(num_classes)
        if self.aux_heads is not None:
            if num_classes > 0:
                for head in self.aux_heads:
                    head.reset(num_classes)
            else:
                self.aux_heads = None


# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj
GOOGLENET_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet_aux(in_chs: int, num_classes: int, drop_rate: float) -> AuxClassifier:
    """Section 5: 4x4 average pool (5x5/3 on the 14x14 map; adaptive here) -> 1x1 conv (128) ->
    fc 1024 -> ReLU -> dropout 0.7 -> fc."""
    return AuxClassifier(nn.AdaptiveAvgPool2d(4), nn.Sequential(inception_conv(in_chs, 128, 1)), 128 * 4 * 4,
                         num_classes, hidden=1024, drop_rate=drop_rate)


class GoogLeNet(AuxNet):
    """Stem (7x7/2, pool, 1x1, 3x3, pool) -> inception 3a-3b -> pool -> 4a-4e -> pool -> 5a-5b -> head.

    Args:
        aux_logits: build the two auxiliary classifiers (used in training mode only).
        transform_input: re-normalise ImageNet-normalised input to [-1, 1], as torchvision's
            pretrained weights (ported from Google's) need.
        large_kernel: kernel of the "5x5" branch (3 in torchvision's port, 5 in the paper).
        drop_rate: dropout before the classifier (0.4 in the paper, 0.2 in torchvision);
        aux_drop_rate: dropout in the auxiliary heads (0.7).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.2,
        aux_logits: bool = True,
        aux_drop_rate: float = 0.7,
        transform_input: bool = False,
        large_kernel: int = 3,
    ):
        super().__init__()
        if transform_input and in_chans != 3:
            raise ValueError("transform_input needs in_chans=3")
        self.transform_input = transform_input
        conv = inception_conv
        pool = partial(nn.MaxPool2d, 3, stride=2, ceil_mode=True)
        layers = [
            ("conv1", conv(in_chans, 64, 7, stride=2)),
            ("pool1", pool()),
            ("conv2", conv(64, 64, 1)),
            ("conv3", conv(64, 192, 3)),
            ("pool2", pool()),
        ]
        in_chs = 192
        for name, widths in GOOGLENET_MODULES.items():
            if name == "4a":
                layers.append(("pool3", pool()))
            elif name == "5a":
                layers.append(("pool4", nn.MaxPool2d(2, stride=2, ceil_mode=True)))
            module = InceptionModule(in_chs, *widths, large_kernel=large_kernel, conv_layer=conv)
            layers.append((f"inception{name}", module))
            in_chs = module.out_chs
        self.features = nn.Sequential(OrderedDict(layers))
        self.feature_info = FeatureInfo([
            feature(64, 2, "features.conv1"),
            feature(192, 4, "features.conv3"),
            feature(480, 8, "features.inception3b"),
            feature(832, 16, "features.inception4e"),
            feature(1024, 32, "features.inception5b"),
        ])
        self.aux_taps = ("inception4a", "inception4d")
        self.aux_heads = nn.ModuleList([googlenet_aux(512, num_classes, aux_drop_rate),
                                        googlenet_aux(528, num_classes, aux_drop_rate)]) if aux_logits else None
        self.init_head(in_chs, num_classes, drop_rate)
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated normal (std 0.01) weights as in torchvision's port; unit norms, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


_TRANSFORM_NOTE = ("torchvision's pretrained {name} weights (ported from Google's) need transform_input=True with "
                   "ImageNet-normalised input (this card's mean/std), or equivalently transform_input=False with "
                   "mean = std = 0.5.")

card = family_card(
    input_convs=("features.conv1.conv",),
    heads=("head.fc", "aux_heads.0.fc", "aux_heads.1.fc"),
    family="googlenet",
    year=2014,
    paper="arXiv:1409.4842 Going Deeper with Convolutions (Szegedy et al.)",
    tricks=("inception_module", "pointwise_conv", "auxiliary_classifier", "global_average_pooling", "relu", "dropout",
            "batch_norm"),
)

register_variants(GoogLeNet, [
    card("googlenet", reference="torchvision:googlenet", min_input_size=(3, 15, 15),
         notes="torchvision's layout of Google's weights: batch norm after every convolution, no local response norm, "
               "3x3 kernels in the '5x5' branch (large_kernel=5 gives the paper's). Two auxiliary classifiers (after "
               "4a and 4d) in training mode: the model returns AuxLogits(logits, aux=(aux1, aux2)); aux_logits=False "
               "builds without them. " + _TRANSFORM_NOTE.format(name="googlenet")),
])
