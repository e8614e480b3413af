"""NASNet-A — Zoph et al. 2017, "Learning Transferable Architectures for Scalable Image
Recognition", arXiv:1707.07012.

An RNN controller trained by reinforcement learning searched for two *cells* on CIFAR-10 (a
normal cell and a reduction cell, each five blocks of "pick two states, apply two operations,
add"); ImageNet networks are stacks of those cells. NASNet-A Large ("6 @ 4032") stacks two
reduction stem cells, then three stages of six normal cells separated by reduction cells, with
168, 336 and 672 filters per operation; its last cell has 4032 channels. The building blocks
are in :mod:`archzoo.layers.nas_cells`; this file is the two genotypes and the cell plan.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..features import FeatureInfo, FeatureStage, feature
from ..layers.nas_cells import CellSpec, CellStack, Genotype, nas_stem
from ..registry import INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
from .base import Classifier, init_weights

# Figure 4 of the paper (NASNet-A); state 0 is the cell before the previous one, 1 the previous cell.
NASNET_A_NORMAL = Genotype(
    blocks=(
        (("sep_5x5", 1), ("sep_3x3", 0)),
        (("sep_5x5", 0), ("sep_3x3", 0)),
        (("avg_3x3", 1), ("identity", 0)),
        (("avg_3x3", 0), ("avg_3x3", 0)),
        (("sep_3x3", 1), ("identity", 1)),
    ),
    concat=(0, 2, 3, 4, 5, 6),
)
NASNET_A_REDUCTION = Genotype(
    blocks=(
        (("sep_5x5", 1), ("sep_7x7", 0)),
        (("max_3x3", 1), ("sep_7x7", 0)),
        (("avg_3x3", 1), ("sep_5x5", 0)),
        (("avg_3x3", 2), ("identity", 3)),
        (("sep_3x3", 2), ("max_3x3", 1)),
    ),
    concat=(3, 4, 5, 6),
)


def nasnet_cells(filters: int, num_normal: int, multiplier: int = 2, skip_reduction_input: bool = True) -> list[CellSpec]:
    """The cell plan: two reduction stem cells (``filters / multiplier**2`` and ``filters /
    multiplier`` wide), then ``num_normal`` normal cells per stage with reduction cells between
    stages, the width doubling at each reduction. With ``skip_reduction_input`` the cell after a
    reduction cell reads the reduction cell's earlier input (NASNet-A Large) instead of its input."""
    specs = [
        CellSpec("stem_0", NASNET_A_REDUCTION, filters // multiplier**2, reduction=True),
        CellSpec("stem_1", NASNET_A_REDUCTION, filters // multiplier, reduction=True),
    ]
    for stage in range(3):
        chs = filters * 2**stage
        if stage:
            specs.append(CellSpec(f"reduce_{stage - 1}", NASNET_A_REDUCTION, chs, reduction=True,
                                  hold_prev=skip_reduction_input))
        specs += [CellSpec(f"cell_{stage * num_normal + i}", NASNET_A_NORMAL, chs) for i in range(num_normal)]
    return specs


class CellNet(Classifier):
    """3x3 stem convolution -> a :class:`CellStack` of searched cells -> ReLU -> global pool ->
    linear: the body NASNet and PNASNet share; subclasses choose the cell plan.

    The feature maps are the stem output, the rectified output of the last cell at each
    resolution (taken by the next cell's input ReLU, ``cells.<next>.adapt_cur.act``) and the final
    ReLU's output."""

    def build(self, in_chans: int, stem_width: int, specs: list[CellSpec], num_classes: int, drop_rate: float) -> None:
        self.stem = nas_stem(in_chans, stem_width)
        self.cells = CellStack(specs, stem_width)
        self.act = nn.ReLU()
        self.feature_info = FeatureInfo(
            [feature(stem_width, 2, "stem")]
            + [feature(c, s, f"cells.{m}") for c, s, m in self.cells.taps]
            + [feature(self.cells.out_chs, self.cells.out_stride, "act")]
        )
        self.init_head(self.cells.out_chs, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.cells(self.stem(x)))

    def feature_stages(self) -> list[FeatureStage]:
        """The stem; then the cells up to each tap, passing ``(x, x_prev)`` along
        (:meth:`~archzoo.layers.nas_cells.Cell.forward_state`), the map being the tap's ReLU of the
        last cell's output; the final ReLU taps the last cell."""
        taps = self.feature_info.modules()[1:-1]
        stages, steps = [FeatureStage(("stem",))], []
        for name in self.cells:
            if taps and taps[0] == f"cells.{name}.adapt_cur.act":
                stages.append(FeatureStage(tuple(steps), tap=taps.pop(0)))
                steps = []
            steps.append(f"cells.{name}")
        return stages + [FeatureStage(tuple(steps), tap="act")]


class NASNet(CellNet):
    """3x3 stem convolution -> stack of searched cells -> ReLU -> global pool -> linear.

    Args:
        num_normal: normal cells per stage (N in "N @ P"); penultimate_filters: channels of the
            last cell (P), i.e. 24 times the first stage's filters per operation.
        stem_width: channels of the stem convolution; multiplier: width ratio between stem cells.
        skip_reduction_input: the cell after a reduction cell reads the reduction cell's earlier
            input, not its output's predecessor (True for NASNet-A Large, False for Mobile).
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        num_normal: int = 6,
        penultimate_filters: int = 4032,
        stem_width: int = 96,
        multiplier: int = 2,
        skip_reduction_input: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if penultimate_filters % 24:
            raise ValueError(f"penultimate_filters must be a multiple of 24, got {penultimate_filters}")
        specs = nasnet_cells(penultimate_filters // 24, num_normal, multiplier, skip_reduction_input)
        self.build(in_chans, stem_width, specs, num_classes, drop_rate)


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv",),
    family="nasnet",
    year=2017,
    paper="arXiv:1707.07012 Learning Transferable Architectures for Scalable Image Recognition (Zoph et al.)",
    tricks=("searched_cells", "depthwise_separable_conv", "pointwise_conv", "batch_norm", "relu", "global_average_pooling"),
)

register_variants(NASNet, [
    card("nasnetalarge", reference="timm:nasnetalarge", input_size=(3, 331, 331), min_input_size=(3, 3, 3),
         mean=INCEPTION_MEAN, std=INCEPTION_STD,
         notes="NASNet-A Large (6 @ 4032) as ported to PyTorch by timm from the TensorFlow release: TensorFlow "
               "'SAME' padding, and strided average pools that count their zero padding (timm's port).",
         kwargs=dict(num_normal=6, penultimate_filters=4032)),
])
