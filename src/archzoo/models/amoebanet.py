"""AmoebaNet-A — Real et al. 2019, "Regularized Evolution for Image Classifier Architecture
Search", arXiv:1802.01548 (AAAI 2019).

The NASNet search space (:mod:`archzoo.models.nasnet`: a normal and a reduction cell of five
blocks, each "pick two states, apply two operations, add") searched by *regularized evolution*
instead of a controller: a population of trained cells; each cycle samples a few, mutates the best
of the sample (an operation or an input of one block) and trains the child; and the *oldest*
member dies, not the worst, so a cell survives only by having children that stay good. The
winner, AmoebaNet-A, is stacked like NASNet: ImageNet networks have a strided 3x3 stem and two
reduction stem cells, CIFAR networks a 3x3 stem at stride 1; then three stages of ``N`` normal
cells with ``F``, ``2F`` and ``4F`` filters per operation, reduction cells in between.

The cells are those of the authors' TensorFlow release (``tensorflow/tpu``,
``models/official/amoeba_net/model_specs.py``, cell ``amoeba_net_a``), rewritten here as
:class:`~archzoo.layers.nas_cells.Genotype` tables: the normal cell concatenates four states
(the earlier cell input and three blocks), the reduction cell all five blocks, and the reduction
cell's "1x7 then 7x1" convolution is bottlenecked to a quarter of the width
(:class:`~archzoo.layers.nas_cells.Conv1x7x7x1`). The building blocks are shared with NASNet-A
and PNASNet-5 (:mod:`archzoo.layers.nas_cells`).
"""

from __future__ import annotations

from ..layers.nas_cells import Genotype
from ..registry import CIFAR_MEAN, CIFAR_STD, INCEPTION_MEAN, INCEPTION_STD, family_card, register_variants
from .nasnet import CellNet, nasnet_cells

# State 0 is the cell before the previous one, 1 the previous cell, 2 + i the output of block i.
# (The TensorFlow release numbers the previous cell 0 and the one before it 1; swapped here.)
AMOEBANET_A_NORMAL = Genotype(
    blocks=(
        (("avg_3x3", 1), ("max_3x3", 1)),
        (("sep_3x3", 0), ("identity", 0)),
        (("identity", 1), ("avg_3x3", 0)),
        (("sep_3x3", 1), ("sep_5x5", 2)),
        (("avg_3x3", 5), ("sep_3x3", 1)),
    ),
    concat=(0, 3, 4, 6),
)
AMOEBANET_A_REDUCTION = Genotype(
    blocks=(
        (("sep_3x3", 0), ("avg_3x3", 1)),
        (("max_3x3", 1), ("sep_7x7", 2)),
        (("max_3x3", 0), ("max_3x3", 1)),
        (("sep_3x3", 4), ("conv_1x7_7x1", 1)),
        (("avg_3x3", 0), ("sep_7x7", 1)),
    ),
    concat=(2, 3, 4, 5, 6),
)


class AmoebaNet(CellNet):
    """Stem -> (stem reduction cells) -> three stages of ``num_normal`` AmoebaNet-A normal cells with
    reduction cells between them -> ReLU -> global pool -> linear.

    Args:
        num_normal: normal cells per stage (N); filters: filters per operation in the first stage
            (F); the last cell has ``16 * F`` channels (four states of ``4F``).
        stem_width: channels of the stem convolution (32 on ImageNet as in the TensorFlow release;
            ``3 * F`` on CIFAR, NASNet's CIFAR stem multiplier).
        stem_cells: reduction cells after the stem (2 on ImageNet, ``F / 4`` and ``F / 2`` wide;
            0 on CIFAR); stem_stride: 2 for the ImageNet stem, 1 for the CIFAR one.
        drop_rate: dropout before the classifier (0.5 in the ImageNet recipe).
    """

    def __init__(
        self,
        num_normal: int = 6,
        filters: int = 190,
        stem_width: int = 32,
        stem_cells: int = 2,
        stem_stride: int = 2,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        specs = nasnet_cells(filters, num_normal, skip_reduction_input=False, normal=AMOEBANET_A_NORMAL,
                             reduction=AMOEBANET_A_REDUCTION, stem_cells=stem_cells)
        self.build(in_chans, stem_width, specs, num_classes, drop_rate, stem_stride)


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=("stem.conv",),
    family="amoebanet",
    year=2018,
    paper="arXiv:1802.01548 Regularized Evolution for Image Classifier Architecture Search (Real et al.)",
    tricks=("searched_cells", "depthwise_separable_conv", "pointwise_conv", "factorized_convolution", "batch_norm", "relu",
            "global_average_pooling"),
    min_input_size=(3, 3, 3),
)

_TF = ("Cells of the authors' TensorFlow release (amoeba_net_a); no auxiliary head (training only, not in the "
       "published count). ")

register_variants(AmoebaNet, [
    card("amoebanet_a_cifar", input_size=(3, 32, 32), min_input_size=(3, 8, 8), dataset="CIFAR-10", num_classes=10,
         mean=CIFAR_MEAN, std=CIFAR_STD,
         notes=_TF + "AmoebaNet-A (N = 6, F = 36) for CIFAR-10, the paper's Table 1 (3.2M parameters): a 3x3 stem "
               "of 108 filters at stride 1 (NASNet's CIFAR stem), no stem cells.",
         kwargs=dict(num_normal=6, filters=36, stem_width=108, stem_cells=0, stem_stride=1)),
    card("amoebanet_a", input_size=(3, 299, 299), mean=INCEPTION_MEAN, std=INCEPTION_STD,
         notes=_TF + "AmoebaNet-A (N = 6, F = 190) for ImageNet, the paper's Table 2 (86.7M parameters): a strided "
               "3x3 stem of 32 filters and two reduction stem cells; 299 x 299 inputs as in the release.",
         kwargs=dict(num_normal=6, filters=190, drop_rate=0.5)),
    card("amoebanet_a_mobile", input_size=(3, 224, 224), mean=INCEPTION_MEAN, std=INCEPTION_STD,
         notes=_TF + "AmoebaNet-A (N = 4, F = 50) in the mobile setting, the paper's Table 3 (5.1M parameters).",
         kwargs=dict(num_normal=4, filters=50, drop_rate=0.5)),
])
