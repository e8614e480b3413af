"""Fractal blocks, joins and drop-path (Larsson et al. 2016, "FractalNet: Ultra-Deep Neural Networks
without Residuals", arXiv:1605.07648).

The expansion rule builds a block of ``C`` columns from one convolution unit:

    f_1(z) = conv(z)            f_{C+1}(z) = join(f_C(f_C(z)), conv(z))

Column ``c`` (0 = shallowest) is a chain of ``2**c`` units, so the block is ``2**(C-1)`` units deep.
Where several columns end at the same depth, one join merges them all by element-wise mean and
feeds the result to each of them (the paper's figure 1; nested joins are flattened into one).

Drop-path regularises the co-adaptation of columns (training only):

* local: a join drops each of its inputs with probability ``p`` but keeps at least one, and
  averages the survivors;
* global: one column is picked for the whole network and every block computes only it, which
  makes each column a strong stand-alone network.

As in the authors' implementation, each draw holds for the whole mini-batch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import ConvNormAct


def fractal_join(inputs: list[torch.Tensor], drop_rate: float = 0.0, training: bool = False) -> torch.Tensor:
    """Element-wise mean of ``inputs``; in training each input is dropped with ``drop_rate``
    (local drop-path), at least one always survives."""
    if training and drop_rate > 0 and len(inputs) > 1:
        keep = torch.rand(len(inputs)) >= drop_rate
        if not keep.any():
            keep[torch.randint(len(inputs), ())] = True
        inputs = [x for x, k in zip(inputs, keep.tolist()) if k]
    if len(inputs) == 1:
        return inputs[0]
    return torch.stack(inputs).mean(0)


def global_drop_column(num_columns: int, ratio: float, training: bool) -> int | None:
    """Global drop-path: with probability ``ratio`` (training only) the one column every block
    computes for this mini-batch; ``None`` means the full fractal (with local drop-path)."""
    if not training or ratio <= 0 or torch.rand(()).item() >= ratio:
        return None
    return int(torch.randint(num_columns, ()).item())


class GlobalDropPath(nn.Module):
    """Global drop-path's draw, made once per forward pass: ``forward(x)`` returns ``(x, column)``,
    the single column every block computes for this mini-batch (:func:`global_drop_column`), or
    ``column`` when it is fixed (evaluating one column alone), or ``None`` for the full fractal.
    The pair is what the blocks pass along (:meth:`FractalBlock.forward_state`)."""

    def __init__(self, num_columns: int, ratio: float = 0.0, column: int | None = None):
        super().__init__()
        self.num_columns, self.ratio, self.column = num_columns, ratio, column

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int | None]:
        if self.column is not None:
            return x, self.column
        return x, global_drop_column(self.num_columns, self.ratio, self.training)

    def extra_repr(self) -> str:
        return f"num_columns={self.num_columns}, ratio={self.ratio}, column={self.column}"


class FractalBlock(nn.Module):
    """``num_columns`` columns of 3x3 conv-BN-ReLU units (``in_chs -> out_chs`` at each column's first).

    ``drop_rate``: dropout after every unit (the paper's per-block dropout); ``local_drop_rate``:
    local drop-path at every join. ``forward(x, column)`` with a column index computes that column
    alone (global drop-path, or the paper's "deepest column alone" sub-network).
    """

    def __init__(self, in_chs: int, out_chs: int, num_columns: int, drop_rate: float = 0.0, local_drop_rate: float = 0.0):
        super().__init__()
        if num_columns < 1:
            raise ValueError(f"a fractal block needs at least one column, got {num_columns}")
        self.columns = nn.ModuleList(
            nn.ModuleList(ConvNormAct(in_chs if i == 0 else out_chs, out_chs, 3) for i in range(2**c))
            for c in range(num_columns)
        )
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.num_columns, self.local_drop_rate = num_columns, local_drop_rate

    def forward_state(self, state: tuple[torch.Tensor, int | None]) -> tuple[torch.Tensor, int | None]:
        """``(x, column) -> (block(x, column), column)``: the step a feature extractor runs."""
        x, column = state
        return self(x, column), column

    def forward(self, x: torch.Tensor, column: int | None = None) -> torch.Tensor:
        if column is not None:
            for unit in self.columns[column]:
                x = self.drop(unit(x))
            return x
        n = self.num_columns
        outs = [x] * n
        for depth in range(1, 2 ** (n - 1) + 1):
            # column c has a unit every 2**(n-1-c) steps; the columns ending here are c_min .. n-1
            ending = [c for c in range(n) if depth % 2 ** (n - 1 - c) == 0]
            for c in ending:
                outs[c] = self.drop(self.columns[c][depth // 2 ** (n - 1 - c) - 1](outs[c]))
            if len(ending) > 1:
                joined = fractal_join([outs[c] for c in ending], self.local_drop_rate, self.training)
                for c in ending:
                    outs[c] = joined
        return outs[0]
