"""AmoebaNet-A (Real et al. 2019, arXiv:1802.01548) and NASNet-A CIFAR (Zoph et al. 2017) from
their published cells: the genotypes, the 1x7-7x1 operation, the CIFAR stem, and the parameter
counts the papers publish."""

from __future__ import annotations

import math

import pytest
import torch

import archzoo
from archzoo.layers.nas_cells import Conv1x7x7x1, Genotype, make_op
from archzoo.models.amoebanet import AMOEBANET_A_NORMAL, AMOEBANET_A_REDUCTION
from archzoo.models.nasnet import NASNET_A_NORMAL, NASNET_A_REDUCTION
from archzoo.profile import count_params

# The cells as the authors' TensorFlow releases write them: operations and inputs in pairs per block,
# states numbered 0 = previous cell, 1 = the one before it, 2 + i = block i; the cell output
# concatenates the states marked 0 in used_hiddenstates.
# tensorflow/tpu models/official/amoeba_net/model_specs.py, cell "amoeba_net_a"
TF_AMOEBANET_A = {
    "normal": (["avg_pool_3x3", "max_pool_3x3", "separable_3x3_2", "none", "none", "avg_pool_3x3",
                "separable_3x3_2", "separable_5x5_2", "avg_pool_3x3", "separable_3x3_2"],
               [0, 0, 1, 1, 0, 1, 0, 2, 5, 0], [1, 0, 1, 0, 0, 1, 0]),
    "reduction": (["separable_3x3_2", "avg_pool_3x3", "max_pool_3x3", "separable_7x7_2", "max_pool_3x3",
                   "max_pool_3x3", "separable_3x3_2", "1x7_7x1", "avg_pool_3x3", "separable_7x7_2"],
                  [1, 0, 0, 2, 1, 0, 4, 0, 1, 0], [1, 1, 0, 0, 0, 0, 0]),
}
# tensorflow/models research/slim/nets/nasnet/nasnet_utils.py, NasNetANormalCell / NasNetAReductionCell
TF_NASNET_A = {
    "normal": (["separable_5x5_2", "separable_3x3_2", "separable_5x5_2", "separable_3x3_2", "avg_pool_3x3",
                "none", "avg_pool_3x3", "avg_pool_3x3", "separable_3x3_2", "none"],
               [0, 1, 1, 1, 0, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0, 0]),
    "reduction": (["separable_5x5_2", "separable_7x7_2", "max_pool_3x3", "separable_7x7_2", "avg_pool_3x3",
                   "separable_5x5_2", "none", "avg_pool_3x3", "separable_3x3_2", "max_pool_3x3"],
                  [0, 1, 0, 1, 0, 1, 3, 2, 2, 0], [1, 1, 1, 0, 0, 0, 0]),
}
_TF_OPS = {"none": "identity", "1x7_7x1": "conv_1x7_7x1", "avg_pool_3x3": "avg_3x3", "max_pool_3x3": "max_3x3",
           "separable_3x3_2": "sep_3x3", "separable_5x5_2": "sep_5x5", "separable_7x7_2": "sep_7x7"}


def from_tensorflow(operations, indices, used) -> Genotype:
    """Our genotype of a TensorFlow cell spec: the two inputs swapped (our 0 is the earlier cell)."""
    swap = {0: 1, 1: 0}
    pairs = [(_TF_OPS[op], swap.get(i, i)) for op, i in zip(operations, indices)]
    blocks = tuple((pairs[2 * b], pairs[2 * b + 1]) for b in range(5))
    concat = tuple(sorted(swap.get(s, s) for s, u in enumerate(used) if not u))
    return Genotype(blocks=blocks, concat=concat)


def same_cell(a: Genotype, b: Genotype) -> bool:
    """Equal up to the order of the two operations of a block (a block adds them)."""
    return a.concat == b.concat and all(sorted(x) == sorted(y) for x, y in zip(a.blocks, b.blocks))


def test_tensorflow_reading_reproduces_nasnet_a():
    """The reading of TensorFlow's cell specs, checked on NASNet-A, whose genotype the timm parity
    test verifies output for output."""
    assert same_cell(from_tensorflow(*TF_NASNET_A["normal"]), NASNET_A_NORMAL)
    assert same_cell(from_tensorflow(*TF_NASNET_A["reduction"]), NASNET_A_REDUCTION)
    # and it is not vacuous: swapping the two inputs back gives another cell
    wrong = Genotype(tuple(((o1, {0: 1, 1: 0}.get(i1, i1)), (o2, {0: 1, 1: 0}.get(i2, i2)))
                           for (o1, i1), (o2, i2) in NASNET_A_NORMAL.blocks), NASNET_A_NORMAL.concat)
    assert not same_cell(wrong, NASNET_A_NORMAL)


def test_amoebanet_a_cells_are_the_released_ones():
    assert from_tensorflow(*TF_AMOEBANET_A["normal"]) == AMOEBANET_A_NORMAL
    assert from_tensorflow(*TF_AMOEBANET_A["reduction"]) == AMOEBANET_A_REDUCTION


# (model, published parameters in millions, the paper's table)
PUBLISHED = [
    ("amoebanet_a_cifar", 3.2, "Real et al. 2019, Table 1: AmoebaNet-A (N=6, F=36), CIFAR-10"),
    ("amoebanet_a", 86.7, "Real et al. 2019, Table 2: AmoebaNet-A (N=6, F=190), ImageNet"),
    ("amoebanet_a_mobile", 5.1, "Real et al. 2019, Table 3: AmoebaNet-A (N=4, F=50), mobile ImageNet"),
    ("nasnet_a_cifar", 3.3, "Zoph et al. 2017, Table 1: NASNet-A (6 @ 768), CIFAR-10"),
]


@pytest.mark.parametrize("name,millions,source", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_parameter_counts_as_published(name, millions, source):
    """The papers print parameters rounded to 0.1M; ours, counted on the built model, round to the
    same: amoebanet_a_cifar 3,218,266; amoebanet_a 86,718,797; amoebanet_a_mobile 5,086,930;
    nasnet_a_cifar 3,346,538.

    What is and is not counted: no auxiliary head (the releases build one for training only: for
    CIFAR it alone would add ~1.5M, which no published figure includes); 1000 ImageNet classes
    where TensorFlow's release has 1001 (3,041 more weights, the same 0.1M); batch-norm scale and
    shift counted, running statistics not. One difference from the TensorFlow AmoebaNet code: its
    factorized reduction asserts an even width, which F = 190's second stem cell (95 filters)
    fails; ours splits odd widths 47 + 48, so the published F = 190 network builds.
    """
    with torch.device("meta"):
        params = count_params(archzoo.create_model(name))
    assert round(params / 1e6, 1) == millions, (params, source)


def test_conv_1x7_7x1_is_bottlenecked_and_strides_like_same_padding():
    op = make_op("conv_1x7_7x1", 24, 32, stride=2)
    assert isinstance(op, Conv1x7x7x1)
    mid = 8  # a quarter of the output width
    expected = 24 * mid + 2 * mid + 2 * (7 * mid * mid + 2 * mid) + mid * 32 + 2 * 32
    assert count_params(op) == expected
    for size in (7, 8, 9):  # "SAME": ceil(size / stride), whatever the parity
        out = op(torch.randn(2, 24, size, size + 2))
        assert out.shape == (2, 32, math.ceil(size / 2), math.ceil((size + 2) / 2))
    assert make_op("conv_1x7_7x1", 32, 32)(torch.randn(1, 32, 5, 6)).shape == (1, 32, 5, 6)


def test_cifar_stem_and_first_cell():
    """CIFAR networks keep the full resolution in the stem; the first cell's concatenation gets the
    stem output (96 channels) projected to the cell width, as TensorFlow's cell does."""
    with torch.device("meta"):
        nas = archzoo.create_model("nasnet_a_cifar")
        amoeba = archzoo.create_model("amoebanet_a_cifar")
        large = archzoo.create_model("nasnetalarge")
        x = torch.empty(2, 3, 32, 32)
        assert nas.forward_features(x).shape == (2, 768, 8, 8)
        assert amoeba.forward_features(x).shape == (2, 4 * (4 * 36), 8, 8)  # four states of 4F
    first = nas.cells["cell_0"]
    assert list(first.concat_proj) == ["0"] and first.concat_proj["0"].conv.in_channels == 96
    assert first.out_chs == 6 * 32
    assert list(amoeba.cells["cell_0"].concat_proj) == ["0"]  # AmoebaNet-A's normal cell concatenates state 0 too
    assert nas.feature_info.strides() == sorted(nas.feature_info.strides()) and nas.feature_info.strides()[0] == 1
    # the ImageNet networks never need the projection (no change to NASNet-A Large)
    assert not any(len(c.concat_proj) for c in large.cells.values())


def test_cards():
    for name in ("amoebanet_a_cifar", "amoebanet_a", "amoebanet_a_mobile"):
        card = archzoo.model_card(name)
        assert card.family == "amoebanet" and "1802.01548" in card.paper and card.year == 2018
        assert "searched_cells" in card.tricks and "factorized_convolution" in card.tricks
    assert archzoo.model_card("amoebanet_a_cifar").num_classes == 10
    assert archzoo.model_card("nasnet_a_cifar").num_classes == 10
    assert "amoebanet_a" in archzoo.list_models(family="amoebanet")
