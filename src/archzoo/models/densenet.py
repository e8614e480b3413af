"""DenseNet — Huang et al. 2016, "Densely Connected Convolutional Networks", arXiv:1608.06993.

Added dense connectivity: inside a block every layer receives the concatenation of all earlier
feature maps and contributes ``k`` (the growth rate) new ones, so features are reused instead of
relearned and every layer has a short path to the loss. Layers are pre-activation
BN-ReLU-Conv with a 1x1 bottleneck to ``4k`` channels (DenseNet-B); transition layers between
blocks compress the channels by 0.5 (DenseNet-C) and halve the resolution.

* ImageNet (section 3, table 1): a 7x7/2 convolution and 3x3/2 max pooling, four dense blocks,
  a final BN-ReLU; DenseNet-121/169/201 (k=32) and -161 (k=48).
* CIFAR (section 4.2): DenseNet-BC with ``L`` layers has three blocks of ``(L - 4) / 6`` bottleneck
  layers after a 3x3 convolution to ``2k`` channels; BC-100 with k=12 has 0.8M parameters.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import ConvNormAct, DenseBlock, NormAct, Transition
from ..registry import CIFAR_MEAN, CIFAR_STD, family_card, register_variants
from .base import Classifier, init_weights


class DenseNet(Classifier):
    """Stem -> dense blocks separated by transitions -> BN-ReLU -> global average pool -> linear.

    Args:
        growth_rate: ``k``, channels each dense layer adds.
        block_config: dense layers per block.
        stem_width: channels of the stem convolution (ImageNet nets: 64, 96 for DenseNet-161;
            CIFAR DenseNet-BC: ``2k``).
        stem: ``"imagenet"`` (7x7/2 conv-BN-ReLU and 3x3/2 max pooling) or ``"cifar"`` (one 3x3
            convolution; the first dense layer's BN-ReLU pre-activates it).
        bn_size: bottleneck width in units of ``k`` (4; ``0``: no bottleneck, plain DenseNet).
        compression: channel factor of each transition (0.5 in DenseNet-C/BC).
        dense_drop_rate: dropout after every dense layer (0.2 in the paper on CIFAR without augmentation).
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        stem_width: int = 64,
        stem: str = "imagenet",
        bn_size: int = 4,
        compression: float = 0.5,
        dense_drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.stem = nn.Sequential()
        if stem == "imagenet":
            self.stem.conv = ConvNormAct(in_chans, stem_width, 7, stride=2)
            self.stem.pool = nn.MaxPool2d(3, stride=2, padding=1)
            conv_stride, stride = 2, 4
        elif stem == "cifar":
            self.stem.conv = nn.Conv2d(in_chans, stem_width, 3, padding=1, bias=False)
            conv_stride, stride = 1, 1
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        # timm's convention: the stem output, each block but the last before its transition, the final norm
        info = [feature(stem_width, conv_stride, "stem.conv")]

        chs = stem_width
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(chs, num_layers, growth_rate, bn_size, dense_drop_rate)
            self.blocks.append(block)
            chs = block.out_chs
            if i < len(block_config) - 1:
                info.append(feature(chs, stride, f"blocks.{i}"))
                self.transitions.append(Transition(chs, int(chs * compression)))
                chs, stride = int(chs * compression), stride * 2
        self.norm = NormAct(chs)
        info.append(feature(chs, stride, "norm"))
        chain = ["stem"]
        for i in range(len(self.blocks)):  # blocks and transitions alternate
            chain += [f"blocks.{i}", f"transitions.{i}"] if i < len(self.transitions) else [f"blocks.{i}"]
        self.feature_chain = (*chain, "norm")
        self.feature_info = FeatureInfo(info)
        self.init_head(chs, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return self.norm(x)


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv.conv",),
    family="densenet",
    year=2016,
    paper="arXiv:1608.06993 Densely Connected Convolutional Networks (Huang et al.)",
    tricks=("dense_concatenation", "growth_rate", "transition_compression", "bottleneck", "preactivation",
            "batch_norm", "relu", "global_average_pooling"),
)

register_variants(DenseNet, [
    card("densenet121", reference="torchvision:densenet121", kwargs=dict(growth_rate=32, block_config=(6, 12, 24, 16))),
    card("densenet161", reference="torchvision:densenet161",
         kwargs=dict(growth_rate=48, block_config=(6, 12, 36, 24), stem_width=96)),
    card("densenet169", reference="torchvision:densenet169", kwargs=dict(growth_rate=32, block_config=(6, 12, 32, 32))),
    card("densenet201", reference="torchvision:densenet201", kwargs=dict(growth_rate=32, block_config=(6, 12, 48, 32))),
    card("densenet_bc_100_k12", input_convs=("stem.conv",), dataset="CIFAR-10", input_size=(3, 32, 32), min_input_size=(3, 8, 8), mean=CIFAR_MEAN, std=CIFAR_STD,
         num_classes=10,
         notes="CIFAR DenseNet-BC (L=100, k=12) of section 4.2: a 3x3 conv to 2k=24 channels, three blocks of 16 "
               "bottleneck layers, compression 0.5. The paper adds dropout 0.2 after each conv without data "
               "augmentation: pass dense_drop_rate=0.2.",
         kwargs=dict(growth_rate=12, block_config=(16, 16, 16), stem_width=24, stem="cifar", num_classes=10)),
])
