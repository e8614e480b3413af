"""LeNet-5 — LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document
Recognition", Proceedings of the IEEE 86(11), section II.B.

The network that established the convolutional recipe: learned convolutions alternating with
subsampling, trained end to end by backpropagation, on 32x32 grey images (MNIST digits padded
by 2 pixels). Layers (the paper's names):

    C1  6 maps, 5x5 conv            28x28     156 parameters
    S2  2x2 trainable subsampling   14x14      12
    C3  16 maps, 5x5 conv, partial  10x10   1,516   (Table I: each map sees 3, 4 or 6 S2 maps)
    S4  2x2 trainable subsampling    5x5       32
    C5  120 maps, 5x5 conv           1x1   48,120
    F6  84 units, fully connected          10,164
    output: 10 Euclidean RBF units with fixed +-1 codes (not trained)

This is modelled faithfully, so the model has exactly the paper's "60,000 trainable parameters":
S2/S4 multiply each 2x2 sum by a trainable coefficient and add a trainable bias per map, C3 uses
the paper's connection table, every layer is followed by the scaled tanh ``1.7159 tanh(2x/3)``,
and the output scores are negated squared distances to fixed class codes (drawn at random, as the
paper allows, instead of its hand-drawn 7x12 character bitmaps). Weights start uniform in
``+-2.4 / fan_in`` (appendix A). Inputs are scaled so the background is -0.1 and the ink 1.175.

``forward_features`` returns C5 (120 maps); the head averages it (the identity at 32x32, and the
paper's remark that C5 is a convolution on bigger inputs) and applies F6 and the output layer.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import ConnectionTableConv, ConvNormAct, EuclideanRBF, FCHead, ScaledTanh, TrainableSubsampling
from ..registry import family_card, register_variants
from .base import Classifier

# Table I: the S2 maps each C3 map is connected to
C3_TABLE = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # contiguous threes
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),  # contiguous fours
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # discontinuous fours
    (0, 1, 2, 3, 4, 5),  # all
)

# the paper's normalisation: white background -> -0.1, black ink -> 1.175, for ink intensity in [0, 1]
LENET_STD = (1 / 1.275,)
LENET_MEAN = (0.1 / 1.275,)


class LeNet5(Classifier):
    """C1 -> S2 -> C3 -> S4 -> C5 -> F6 -> RBF output; see the module docstring.

    The convolutions are unpadded, so each map is smaller than the input over its stride by a
    border (32x32 input: C1 28x28 at stride 1, C3 10x10 at stride 2, C5 1x1 at stride 4).
    """

    feature_chain = ("c1", "s2", "c3", "s4", "c5")

    def __init__(self, num_classes: int = 10, in_chans: int = 1, drop_rate: float = 0.0):
        super().__init__()
        act = ScaledTanh
        conv = partial(ConvNormAct, padding=0, norm_layer=None, act_layer=act)
        self.c1 = conv(in_chans, 6, 5)
        self.s2 = nn.Sequential(TrainableSubsampling(6), act())
        self.c3 = nn.Sequential(ConnectionTableConv(6, C3_TABLE, 5), act())
        self.s4 = nn.Sequential(TrainableSubsampling(16), act())
        self.c5 = conv(16, 120, 5)
        self.feature_info = FeatureInfo([feature(6, 1, "c1"), feature(16, 2, "c3"), feature(120, 4, "c5")])
        self.num_features, self.num_classes = 120, num_classes
        self.head = FCHead(120, num_classes, hidden=(84,), pool_size=1, drop_rate=drop_rate, act_layer=act,
                           fc_layer=EuclideanRBF)
        self.head_hidden_size = 84
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                nn.init.uniform_(m.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.uniform_(m.bias, -2.4 / fan_in, 2.4 / fan_in)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.c5(self.s4(self.c3(self.s2(self.c1(x)))))


card = family_card(
    input_convs=("c1.conv",),
    family="lenet",
    year=1998,
    paper="LeCun et al. 1998, Gradient-Based Learning Applied to Document Recognition (Proc. IEEE 86(11))",
    tricks=("conv_pool_stack", "end_to_end_features"),
)

register_variants(LeNet5, [
    card("lenet5", dataset="MNIST", input_size=(1, 32, 32), min_input_size=(1, 32, 32), mean=LENET_MEAN, std=LENET_STD, num_classes=10,
         cam_layer="c3",  # C5's output is 1x1 at 32x32: explain the last map with extent (10x10)
         notes="The 1998 network as published: trainable subsampling, C3's partial connection table, scaled tanh, "
               "and an output of Euclidean RBF units with fixed random +-1 class codes (a buffer, not trained): "
               "exactly 60,000 trainable parameters. Scores are negated squared distances, so argmax is the class. "
               "Inputs: 32x32 grey (MNIST padded by 2), background -0.1 and ink 1.175 after normalisation."),
])
