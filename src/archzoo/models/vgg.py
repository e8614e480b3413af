"""VGG — Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", arXiv:1409.1556.

Depth as the design variable: every convolution is 3x3 (stride 1, padding 1) and five stages of
them are separated by 2x2 max pooling, widths 64-128-256-512-512. Two stacked 3x3 layers see
what one 5x5 sees and three see a 7x7, with fewer weights and more non-linearities (section 2.3).
Configurations A, B, D, E of Table 1 are ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19``; the ``_bn``
variants (torchvision's) add batch norm after every convolution. The classifier is AlexNet's:
two 4096-unit fully-connected layers with dropout, then the final layer.

``forward_features`` returns the last pooled map (512 channels, 7x7 at 224x224); the head pools it
to 7x7 (the identity at 224) and runs the fully-connected layers. Feature maps follow timm: each
stage's output before its pooling (strides 1 to 16), then the final pooled map (stride 32).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import ConvNormAct, FCHead
from ..registry import family_card, register_variants
from .base import Classifier, init_weights

# Table 1: convolutions per stage
VGG_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
VGG_WIDTHS = (64, 128, 256, 512, 512)


class VGG(Classifier):
    """Stages of 3x3 conv (-> batch norm) -> ReLU, separated by 2x2 max pooling, then the FC head.

    Args:
        depths: 3x3 convolutions per stage; widths: their channels.
        batch_norm: batch norm after every convolution.
        drop_rate: dropout after each hidden FC layer; hidden: widths of the hidden FC layers.
    """

    feature_chain = ("stages", "pool")

    def __init__(
        self,
        depths: tuple[int, ...] = VGG_DEPTHS[16],
        widths: tuple[int, ...] = VGG_WIDTHS,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        hidden: tuple[int, ...] = (4096, 4096),
    ):
        super().__init__()
        # convolutions keep their bias even before batch norm (torchvision's _bn layout)
        conv = partial(ConvNormAct, kernel_size=3, bias=True, norm_layer=nn.BatchNorm2d if batch_norm else None)
        stages, info, in_chs = [], [], in_chans
        for i, (depth, width) in enumerate(zip(depths, widths)):
            layers = [("pool", nn.MaxPool2d(2, stride=2))] if i > 0 else []
            for j in range(depth):
                layers.append((f"conv{j + 1}", conv(in_chs, width)))
                in_chs = width
            stages.append(nn.Sequential(OrderedDict(layers)))
            info.append(feature(width, 2**i, f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.feature_info = FeatureInfo(info + [feature(in_chs, 2 ** len(depths), "pool")])
        self.num_features, self.num_classes = in_chs, num_classes
        self.head = FCHead(in_chs, num_classes, hidden=hidden, pool_size=7, drop_rate=drop_rate)
        self.head_hidden_size = self.head.hidden_size
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(x))


card = family_card(
    input_convs=("stages.0.conv1.conv",),
    family="vgg",
    year=2014,
    paper="arXiv:1409.1556 Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan & Zisserman)",
    tricks=("conv_pool_stack", "stacked_3x3_convs", "relu", "dropout"),
    min_input_size=(3, 32, 32),
    notes="The head is not 'global pool + linear': the last map is pooled to 7x7 and goes through two 4096-unit "
          "fully-connected layers, so class activation maps need gradient methods (Grad-CAM). forward_head("
          "pre_logits=True) gives the 4096-d penultimate features.",
)

register_variants(VGG, [
    card(f"vgg{d}{bn}", reference=f"torchvision:vgg{d}{bn}", extra_tricks=("batch_norm",) if bn else (),
         kwargs=dict(depths=VGG_DEPTHS[d], batch_norm=bool(bn)))
    for bn in ("", "_bn")
    for d in (11, 13, 16, 19)
])
