"""A searched-cell network for architecture search — the NASNet search space of Zoph et al. 2017,
"Learning Transferable Architectures for Scalable Image Recognition", arXiv:1707.07012.

``searched_cellnet`` is the CIFAR-style NASNet body (a 3x3 stem at stride 1, three stages of
``num_normal`` normal cells with a reduction cell between stages, the width doubling at each
reduction) whose two cells are *arguments* written as plain JSON, so any cell that
:mod:`archzoo.search` samples builds through ``create_model`` and trains with ``archzoo train``::

    archzoo train searched_cellnet --data digits --model-kwargs \\
        'normal=[["sep_3x3",0,"identity",1],["dil_3x3",2,"avg_3x3",0]]' \\
        'reduction=[["max_3x3",0,"sep_5x5",1],["sep_3x3",2,"identity",1]]' filters=16

A cell is a list of blocks ``[op_a, input_a, op_b, input_b]`` (inputs: 0 the cell before the
previous one, 1 the previous cell, 2 + i block i's output); its output concatenates the block
outputs no later block reads (NASNet's rule), unless ``*_concat`` names the states. The default
cells are NASNet-A's (with its concatenations).
"""

from __future__ import annotations

from ..layers.nas_cells import Genotype
from ..registry import CIFAR_MEAN, CIFAR_STD, register_variants
from .nasnet import NASNET_A_NORMAL, NASNET_A_REDUCTION, CellNet, card, nasnet_cells


def cell_rows(genotype: Genotype) -> list[list]:
    """A :class:`Genotype` written as JSON rows ``[op_a, input_a, op_b, input_b]``."""
    return [[a, i, b, j] for (a, i), (b, j) in genotype.blocks]


def cell_genotype(rows, concat=None, what: str = "cell") -> Genotype:
    """JSON rows (see the module docstring) -> :class:`Genotype`; ``concat=None``: the unused block outputs."""
    try:
        blocks = tuple(((str(a), int(i)), (str(b), int(j))) for a, i, b, j in rows)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of [op_a, input_a, op_b, input_b] rows, got {rows!r}") from None
    if not blocks:
        raise ValueError(f"{what} has no blocks")
    if concat is None:
        used = {s for pair in blocks for _, s in pair}
        concat = tuple(s for s in range(2, 2 + len(blocks)) if s not in used)
    try:
        return Genotype(blocks=blocks, concat=tuple(int(s) for s in concat))
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


class SearchedCellNet(CellNet):
    """3x3 stem (stride 1) -> ``num_normal`` normal cells, reduction, ``num_normal`` normal cells,
    reduction, ``num_normal`` normal cells -> ReLU -> global pool -> linear.

    Args:
        normal, reduction: the two cells as JSON rows; normal_concat, reduction_concat: their
            concatenated states (default: the block outputs no block reads).
        num_normal: normal cells per stage (N); filters: filters per operation in the first stage (F).
        stem_width: channels of the stem convolution (default ``3 * filters``); drop_rate: dropout
            before the classifier.
    """

    def __init__(self, normal=None, reduction=None, normal_concat=None, reduction_concat=None,
                 num_normal: int = 2, filters: int = 16, stem_width: int | None = None,
                 num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0):
        super().__init__()
        n = NASNET_A_NORMAL if normal is None else cell_genotype(normal, normal_concat, "normal")
        r = NASNET_A_REDUCTION if reduction is None else cell_genotype(reduction, reduction_concat, "reduction")
        specs = nasnet_cells(filters, num_normal, skip_reduction_input=False, normal=n, reduction=r, stem_cells=0)
        self.build(in_chans, stem_width or 3 * filters, specs, num_classes, drop_rate, stem_stride=1)


# --- variants ---------------------------------------------------------------------------------

# the card of its family (NASNet): same paper, year and tricks

register_variants(SearchedCellNet, [
    card("searched_cellnet", input_size=(3, 32, 32), min_input_size=(3, 8, 8), dataset="CIFAR-10", num_classes=10,
         mean=CIFAR_MEAN, std=CIFAR_STD,
         notes="The NASNet CIFAR body with its cells as arguments (JSON rows), for archzoo search: default "
               "NASNet-A's cells, N = 2, F = 16. The ops of the search space include dilated separable "
               "convolutions (dil_3x3, dil_5x5).",
         kwargs=dict(num_normal=2, filters=16)),
])
