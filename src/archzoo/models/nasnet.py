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
from ..layers.conv import ConvNormAct
from ..layers.nas_cells import CellSpec, CellStack, Genotype, NasBatchNorm, nas_stem
from ..registry import CIFAR_MEAN, CIFAR_STD, INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
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


def nasnet_cells(filters: int, num_normal: int, multiplier: int = 2, skip_reduction_input: bool = True,
                 normal: Genotype = NASNET_A_NORMAL, reduction: Genotype = NASNET_A_REDUCTION,
                 stem_cells: int = 2) -> list[CellSpec]:
    """The cell plan: ``stem_cells`` reduction stem cells (ImageNet: two, ``filters / multiplier**2``
    and ``filters / multiplier`` wide; CIFAR: none), then ``num_normal`` normal cells per stage with
    reduction cells between stages, the width doubling at each reduction. With
    ``skip_reduction_input`` the cell after a reduction cell reads the reduction cell's earlier
    input (NASNet-A Large) instead of its input. ``normal`` and ``reduction`` are the two searched
    cells (NASNet-A's by default; AmoebaNet-A's in :mod:`archzoo.models.amoebanet`)."""
    specs = [CellSpec(f"stem_{i}", reduction, filters // multiplier ** (stem_cells - i), reduction=True)
             for i in range(stem_cells)]
    for stage in range(3):
        chs = filters * 2**stage
        if stage:
            specs.append(CellSpec(f"reduce_{stage - 1}", reduction, chs, reduction=True,
                                  hold_prev=skip_reduction_input))
        specs += [CellSpec(f"cell_{stage * num_normal + i}", normal, chs) for i in range(num_normal)]
    return specs


def cifar_stem(in_chans: int, out_chs: int) -> ConvNormAct:
    """The CIFAR networks' first layer: a 3x3 convolution at stride 1 ("SAME" padding) and BN, no
    activation (Zoph et al. 2017's CIFAR-10 models)."""
    return ConvNormAct(in_chans, out_chs, 3, stride=1, padding=1, norm_layer=NasBatchNorm, act_layer=None)


class CellNet(Classifier):
    """3x3 stem convolution -> a :class:`CellStack` of searched cells -> ReLU -> global pool ->
    linear: the body NASNet and PNASNet share; subclasses choose the cell plan.

    The feature maps are the stem output, the rectified output of the last cell at each
    resolution (taken by the next cell's input ReLU, ``cells.<next>.adapt_cur.act``) and the final
    ReLU's output."""

    def build(self, in_chans: int, stem_width: int, specs: list[CellSpec], num_classes: int, drop_rate: float,
              stem_stride: int = 2) -> None:
        """``stem_stride`` 2: the ImageNet stem (:func:`nas_stem`); 1: the CIFAR one (:func:`cifar_stem`)."""
        self.stem = nas_stem(in_chans, stem_width) if stem_stride == 2 else cifar_stem(in_chans, stem_width)
        self.cells = CellStack(specs, stem_width, stem_stride)
        self.act = nn.ReLU()
        self.feature_info = FeatureInfo(
            [feature(stem_width, stem_stride, "stem")]
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
            input, not its output's predecessor (True for NASNet-A Large, False for Mobile and CIFAR).
        stem_cells: reduction cells after the stem convolution (2 on ImageNet, 0 on CIFAR);
            stem_stride: 2 for the ImageNet stem convolution, 1 for the CIFAR one.
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        num_normal: int = 6,
        penultimate_filters: int = 4032,
        stem_width: int = 96,
        multiplier: int = 2,
        skip_reduction_input: bool = True,
        stem_cells: int = 2,
        stem_stride: int = 2,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if penultimate_filters % 24:
            raise ValueError(f"penultimate_filters must be a multiple of 24, got {penultimate_filters}")
        specs = nasnet_cells(penultimate_filters // 24, num_normal, multiplier, skip_reduction_input,
                             stem_cells=stem_cells)
        self.build(in_chans, stem_width, specs, num_classes, drop_rate, stem_stride)


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
    card("nasnet_a_cifar", input_size=(3, 32, 32), min_input_size=(3, 8, 8), dataset="CIFAR-10", num_classes=10,
         mean=CIFAR_MEAN, std=CIFAR_STD,
         notes="NASNet-A (6 @ 768) for CIFAR-10, the paper's Table 1 (3.3M parameters): a 3x3 stem convolution "
               "of 96 filters at stride 1, no stem cells, three stages of six normal cells with 32, 64, 128 "
               "filters per operation and reduction cells between them (TensorFlow's cifar_config: "
               "stem_multiplier 3, no skip_reduction_layer_input). The auxiliary head used in training is not "
               "built (the published count is without it).",
         kwargs=dict(num_normal=6, penultimate_filters=768, stem_width=96, skip_reduction_input=False,
                     stem_cells=0, stem_stride=1)),
])
