"""PNASNet-5 — Liu et al. 2017, "Progressive Neural Architecture Search", arXiv:1712.00559.

The NASNet search space (:mod:`archzoo.models.nasnet`) searched progressively: cells with one
block first, then the best ones grown block by block, a learned predictor ranking candidates
instead of training them all. The result, PNASNet-5, is a single cell used as the normal cell
and (striding its operations on the cell inputs) as the reduction cell. PNASNet-5 Large stacks
two stem cells and three stages of four cells (the first cell of the later stages reduces),
216, 432 and 864 filters per operation; its last cell has 4320 channels. The building blocks
are in :mod:`archzoo.layers.nas_cells`.
"""

from __future__ import annotations

from ..layers.nas_cells import CellSpec, Genotype
from ..registry import INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
from .nasnet import CellNet

# Figure 1 of the paper; state 0 is the cell before the previous one, 1 the previous cell.
PNASNET_5 = Genotype(
    blocks=(
        (("sep_5x5", 0), ("max_3x3", 0)),
        (("sep_7x7", 1), ("max_3x3", 1)),
        (("sep_5x5", 1), ("sep_3x3", 1)),
        (("sep_3x3", 4), ("max_3x3", 1)),
        (("sep_3x3", 0), ("identity", 1)),
    ),
    concat=(2, 3, 4, 5, 6),
)


def pnasnet_cells(filters: int, cells_per_stage: int, multiplier: int = 2) -> list[CellSpec]:
    """The cell plan: two reducing stem cells (``filters / multiplier**2`` and ``filters /
    multiplier`` wide), then three stages of ``cells_per_stage`` cells whose first cell reduces
    (except in the first stage), the width doubling at each reduction.

    Normal cells are named ``cell_i``, reducing ones ``reduce_i``, each counted on its own."""
    specs = [
        CellSpec("stem_0", PNASNET_5, filters // multiplier**2, reduction=True),
        CellSpec("stem_1", PNASNET_5, filters // multiplier, reduction=True),
    ]
    n = 0
    for stage in range(3):
        chs = filters * 2**stage
        for i in range(cells_per_stage):
            if stage and i == 0:
                specs.append(CellSpec(f"reduce_{stage - 1}", PNASNET_5, chs, reduction=True))
            else:
                specs.append(CellSpec(f"cell_{n}", PNASNET_5, chs))
                n += 1
    return specs


class PNASNet(CellNet):
    """3x3 stem convolution -> stack of PNASNet-5 cells -> ReLU -> global pool -> linear.

    Args:
        cells_per_stage: cells per stage, the first of stages 2 and 3 reducing (N = 4 in the paper).
        filters: filters per operation in the first stage (F = 216); the last cell has ``20 * F``.
        stem_width: channels of the stem convolution; multiplier: width ratio between stem cells.
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        cells_per_stage: int = 4,
        filters: int = 216,
        stem_width: int = 96,
        multiplier: int = 2,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.build(in_chans, stem_width, pnasnet_cells(filters, cells_per_stage, multiplier), num_classes, drop_rate)


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv",),
    family="pnasnet",
    year=2017,
    paper="arXiv:1712.00559 Progressive Neural Architecture Search (Liu et al.)",
    tricks=("searched_cells", "depthwise_separable_conv", "pointwise_conv", "batch_norm", "relu", "global_average_pooling"),
)

register_variants(PNASNet, [
    card("pnasnet5large", reference="timm:pnasnet5large", input_size=(3, 331, 331), min_input_size=(3, 3, 3),
         mean=INCEPTION_MEAN, std=INCEPTION_STD,
         notes="PNASNet-5 Large (N = 4, F = 216) as ported to PyTorch by timm from the TensorFlow release, "
               "with TensorFlow 'SAME' padding.",
         kwargs=dict(cells_per_stage=4, filters=216)),
])
