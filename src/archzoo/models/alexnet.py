"""AlexNet — Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks" (NeurIPS 2012).

Five convolutions and three fully-connected layers that won ILSVRC-2012 by a wide margin and
started the deep learning era. What it added (section 3-4): ReLU non-linearities, local response
normalisation after the first two convolutions, overlapping max pooling (3x3, stride 2), and
dropout in the first two fully-connected layers.

* ``alexnet_lrn`` is the paper's network: 96-256-384-384-256 kernels, LRN (k=2, n=5,
  alpha=1e-4, beta=0.75, in the paper's formula), and the two-GPU split kept as grouped
  convolutions (conv2, conv4, conv5 see only the half of the previous maps on their GPU).
* ``alexnet`` is torchvision's single-tower variant (Krizhevsky 2014, "One weird trick for
  parallelizing convolutional neural networks", arXiv:1404.5997): 64-192-384-256-256 kernels,
  no LRN, no groups, dropout on the fully-connected layers' inputs.

``forward_features`` returns the last (pooled) convolutional map; the head pools it to 6x6 and
runs the fully-connected layers (:class:`~archzoo.layers.FCHead`).
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


def local_response_norm() -> nn.LocalResponseNorm:
    """Section 3.3: ``b = a / (k + alpha * sum_{n neighbouring maps} a^2)^beta`` with k=2, n=5,
    alpha=1e-4, beta=0.75. torch divides alpha by n, so it is given ``n * alpha``."""
    n = 5
    return nn.LocalResponseNorm(size=n, alpha=n * 1e-4, beta=0.75, k=2.0)


class AlexNet(Classifier):
    """conv1 (11x11/4) -> [LRN] -> pool -> conv2 (5x5) -> [LRN] -> pool -> conv3-5 (3x3) -> pool -> FC head.

    Args:
        widths: kernels of the five convolutions.
        lrn: local response normalisation after conv1 and conv2 (the paper).
        groups: groups of conv2, conv4 and conv5 (2: the paper's two GPUs).
        dropout_first: dropout on the fully-connected layers' inputs (torchvision) instead of outputs.
        drop_rate: dropout probability in the head; hidden: widths of the hidden FC layers.
    """

    feature_chain = ("stages", "pool")

    def __init__(
        self,
        widths: tuple[int, int, int, int, int] = (64, 192, 384, 256, 256),
        lrn: bool = False,
        groups: int = 1,
        dropout_first: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.5,
        hidden: tuple[int, ...] = (4096, 4096),
    ):
        super().__init__()
        conv = partial(ConvNormAct, norm_layer=None)
        pool = partial(nn.MaxPool2d, kernel_size=3, stride=2)  # overlapping pooling
        c1, c2, c3, c4, c5 = widths

        def norm():
            return [("lrn", local_response_norm())] if lrn else []

        self.stages = nn.Sequential(
            nn.Sequential(OrderedDict([("conv1", conv(in_chans, c1, 11, stride=4, padding=2))] + norm())),
            nn.Sequential(OrderedDict([("pool", pool()), ("conv2", conv(c1, c2, 5, groups=groups))] + norm())),
            nn.Sequential(OrderedDict([
                ("pool", pool()),
                ("conv3", conv(c2, c3, 3)),
                ("conv4", conv(c3, c4, 3, groups=groups)),
                ("conv5", conv(c4, c5, 3, groups=groups)),
            ])),
        )
        self.pool = pool()
        self.feature_info = FeatureInfo([
            feature(c1, 4, "stages.0"),
            feature(c2, 8, "stages.1"),
            feature(c5, 16, "stages.2"),
            feature(c5, 32, "pool"),
        ])
        self.num_features, self.num_classes = c5, num_classes
        self.head = FCHead(c5, num_classes, hidden=hidden, pool_size=6, drop_rate=drop_rate, dropout_first=dropout_first)
        self.head_hidden_size = self.head.hidden_size
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(x))


_HEAD_NOTE = ("The head is not 'global pool + linear': the last map is pooled to 6x6 and goes through two 4096-unit "
              "fully-connected layers, so class activation maps need gradient methods (Grad-CAM). forward_head("
              "pre_logits=True) gives the 4096-d penultimate features.")

card = family_card(
    input_convs=("stages.0.conv1.conv",),
    family="alexnet",
    year=2012,
    paper="Krizhevsky et al. 2012, ImageNet Classification with Deep Convolutional Neural Networks (NeurIPS)",
    tricks=("conv_pool_stack", "end_to_end_features", "relu", "dropout", "overlapping_pooling"),
    min_input_size=(3, 63, 63),
)

register_variants(AlexNet, [
    card("alexnet", reference="torchvision:alexnet",
         notes="torchvision's single-tower AlexNet (arXiv:1404.5997): 64-192-384-256-256 kernels, no local response "
               "norm, dropout before each hidden fully-connected layer. " + _HEAD_NOTE),
    card("alexnet_lrn", extra_tricks=("local_response_norm", "grouped_conv"),
         notes="The paper's network: 96-256-384-384-256 kernels, local response norm after conv1 and conv2, the "
               "two-GPU split as 2 groups in conv2/4/5, dropout after each hidden fully-connected layer. " + _HEAD_NOTE,
         kwargs=dict(widths=(96, 256, 384, 384, 256), lrn=True, groups=2, dropout_first=False)),
])
