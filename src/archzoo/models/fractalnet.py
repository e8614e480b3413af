"""FractalNet — Larsson et al. 2016, "FractalNet: Ultra-Deep Neural Networks without Residuals",
arXiv:1605.07648.

Added the fractal expansion rule ``f_{C+1}(z) = join(f_C(f_C(z)), conv(z))``, where a join is the
element-wise mean: a block of ``C`` columns holds sub-paths of 1, 2, ..., ``2**(C-1)`` convolutions
and no residual connection, suggesting that what ultra-deep nets need is short paths to train
through while they become effectively deeper, not residuals.
Drop-path regularises it: local drop-path drops join inputs, global drop-path trains single
columns, so each column alone is a strong network ("deepest column alone" in table 1).

The CIFAR network of section 4: ``B = 5`` blocks of ``C = 3`` columns (20 layers deep), 3x3
conv-BN-ReLU units with (64, 128, 256, 512, 512) channels, 2x2 max pooling after each block (down
to 1x1 on 32x32 inputs) and a linear classifier; the authors' Caffe generator
(github.com/gustavla/fractalnet) has the same layers, but pools each column before the block's
last join and applies dropout before BN, where we follow the text (join, then pool; dropout after
each unit). Regularised training (the "+ drop-path + dropout" rows) uses
``local_drop_rate=0.15``, ``global_drop_ratio=0.5`` (half of the mini-batches) and dropout
``block_drop_rates=(0, 0.1, 0.2, 0.3, 0.4)``; all default to off, like drop-path elsewhere in the zoo.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..features import FeatureInfo, feature
from ..layers import FractalBlock, GlobalDropPath
from ..registry import CIFAR_MEAN, CIFAR_STD, family_card, register_variants
from .base import Classifier, init_weights


class FractalNet(Classifier):
    """Fractal blocks, each followed by 2x2 max pooling -> global average pool -> linear.

    Args:
        num_columns: columns ``C`` per block (depth ``len(widths) * 2**(C-1)`` convolutions).
        widths: channels of each block.
        block_drop_rates: dropout after every convolution of each block (``None``: none).
        local_drop_rate: probability that a join drops each input (training; 0.15 in the paper).
        global_drop_ratio: fraction of mini-batches trained on a single random column (0.5 in the paper).
        column: evaluate a single column only (e.g. ``num_columns - 1``, the deepest); ``None``: the
            whole fractal. Can be changed after building: ``model.column = ...``.
        drop_rate: dropout before the classifier.
    """

    def __init__(
        self,
        num_columns: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 512, 512),
        block_drop_rates: tuple[float, ...] | None = None,
        local_drop_rate: float = 0.0,
        global_drop_ratio: float = 0.0,
        column: int | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        block_drop_rates = block_drop_rates or (0.0,) * len(widths)
        if len(block_drop_rates) != len(widths):
            raise ValueError(f"block_drop_rates {block_drop_rates} needs one rate per block ({len(widths)})")
        if column is not None and not 0 <= column < num_columns:
            raise ValueError(f"column must be in 0..{num_columns - 1}, got {column}")
        self.num_columns = num_columns
        self.global_drop = GlobalDropPath(num_columns, global_drop_ratio, column)
        self.blocks, self.pools = nn.ModuleList(), nn.ModuleList()
        info, chs, stride = [], in_chans, 1
        for i, (width, p) in enumerate(zip(widths, block_drop_rates)):
            self.blocks.append(FractalBlock(chs, width, num_columns, drop_rate=p, local_drop_rate=local_drop_rate))
            self.pools.append(nn.MaxPool2d(2, stride=2))
            chs, stride = width, stride * 2
            info.append(feature(width, stride, f"pools.{i}"))
        self.feature_info = FeatureInfo(info)
        # the state passed along is (map, column): blocks take both (forward_state), pools the map
        self.feature_chain = ("global_drop", *[f"{kind}.{i}" for i in range(len(widths)) for kind in ("blocks", "pools")])
        self.init_head(chs, num_classes, drop_rate)
        init_weights(self)

    @property
    def column(self) -> int | None:
        """The single column evaluated (``None``: the whole fractal)."""
        return self.global_drop.column

    @column.setter
    def column(self, column: int | None) -> None:
        self.global_drop.column = column

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # one draw per mini-batch, shared by every block: global drop-path keeps one column throughout
        x, column = self.global_drop(x)
        for block, pool in zip(self.blocks, self.pools):
            x = pool(block(x, column))
        return x


# --- variants ---------------------------------------------------------------------------------

card = family_card(
    input_convs=tuple(f"blocks.0.columns.{i}.0.conv" for i in range(3)),  # every column starts on the image
    family="fractalnet",
    year=2016,
    paper="arXiv:1605.07648 FractalNet: Ultra-Deep Neural Networks without Residuals (Larsson et al.)",
    tricks=("fractal_expansion", "local_drop_path", "global_drop_path", "dropout", "stacked_3x3_convs",
            "batch_norm", "relu"),
)

register_variants(FractalNet, [
    card("fractalnet", dataset="CIFAR-10", input_size=(3, 32, 32), min_input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
         num_classes=10, cam_layer="blocks.4",  # the last pool leaves 1x1 at 32x32: explain the block before it
         notes="The 20-layer CIFAR FractalNet of table 1 (B=5 blocks, C=3 columns, 64-128-256-512-512 channels), "
               "as in the authors' Caffe generator. Paper-regularised training: local_drop_rate=0.15, "
               "global_drop_ratio=0.5, block_drop_rates=(0, 0.1, 0.2, 0.3, 0.4). The paper prints 38.6M "
               "parameters for this net; the architecture it describes (and the authors' code) has 33.7M.",
         kwargs=dict(num_columns=3, widths=(64, 128, 256, 512, 512), num_classes=10)),
])
