"""FC-DenseNet — Jégou, Drozdzal, Vazquez, Romero & Bengio 2016, "The One Hundred Layers Tiramisu:
Fully Convolutional DenseNets for Semantic Segmentation", arXiv:1611.09326 (CVPR workshops 2017).

DenseNet's blocks (:class:`~archzoo.layers.DenseBlock`: each layer BN -> ReLU -> 3x3 conv ->
dropout 0.2 adds ``growth_rate`` maps and sees all earlier ones) in a U-shaped net, trained from
scratch (Figure 1, Table 2 for FC-DenseNet103):

* a 3x3 convolution to 48 maps; then per level a dense block and a *transition down* (BN -> ReLU
  -> 1x1 conv keeping the width -> dropout 0.2 -> 2x2 max pooling); each block's output (its input
  and its new maps) is kept as the skip of its level;
* a bottleneck dense block at stride 32;
* per level back up: a *transition up* — a 3x3 transposed convolution of stride 2 applied only to
  the maps the previous dense block *created* (not its input: the widths would explode at full
  resolution, section 3.2), centre-cropped to the skip's size and concatenated with it — then a
  dense block;
* a 1x1 convolution to the classes on the last block's output.

Variants (section 4): FC-DenseNet56 has 4 layers in every block at growth 12, FC-DenseNet67 5 at
growth 16, FC-DenseNet103 4, 5, 7, 10, 12 | 15 | 12, 10, 7, 5, 4 at growth 16 (the depth counts
the convolutions: stem, dense layers, 5 transitions down and up, classifier).

**Parameters.** The layers are the zoo's pre-activation DenseNet layers (bias-free convolutions,
as every DenseNet) and the transitions down are bias-free too: each feeds only batch norms (after
dropout and pooling). The authors' Lasagne code gives those convolutions biases (3,184 more
weights in FC-DenseNet103, 1,488 in 56, 2,320 in 67); the stem, transposed convolutions and
classifier have biases in both. Counts at 11 classes (trainable | with the authors' biases | also
counting batch norm's running mean and variance, which Lasagne's ``count_params`` includes):
56: 1.375M | 1.377M | 1.398M (paper 1.5M); 67: 3.461M | 3.463M | 3.503M (paper 3.5M); 103: 9.319M |
9.322M | 9.425M (paper 9.4M). The last convention gives the paper's 3.5M and 9.4M; for 56 no
reading gives 1.5M (re-implementations report 1.4M, e.g. SimJeg/FC-DenseNet issue 31).

The transposed convolution is unpadded (``2h + 1`` rows from ``h``) and cropped to the skip's
``2h`` or ``2h + 1`` rows from the top-left, as the Lasagne code's centre cropping does; any input
of at least 32x32 works (the bottleneck then runs on 1x1: train with batches of 2 or more).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import DenseBlock, NormAct
from ..models.base import init_weights
from ..registry import family_card, register_variants
from .base import Segmenter


class TransitionDown(nn.Sequential):
    """BN -> ReLU -> 1x1 conv (same width) -> dropout -> 2x2 max pooling."""

    def __init__(self, chs: int, drop_rate: float = 0.2):
        super().__init__()
        self.norm = NormAct(chs)
        self.conv = nn.Conv2d(chs, chs, 1, bias=False)
        self.drop = nn.Dropout(drop_rate)
        self.pool = nn.MaxPool2d(2, stride=2)


class TransitionUp(nn.Module):
    """A 3x3 stride-2 transposed convolution of the new maps, centre-cropped to the skip's size,
    then ``cat([up, skip])``."""

    def __init__(self, chs: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(chs, chs, 3, stride=2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.conv(x)
        (h, w), (uh, uw) = skip.shape[-2:], up.shape[-2:]
        top, left = (uh - h) // 2, (uw - w) // 2
        return torch.cat([up[..., top:top + h, left:left + w], skip], dim=1)


class FCDenseNet(Segmenter):
    """The Tiramisu (see the module doc).

    Args:
        num_classes: classes (CamVid: 11).
        blocks: layers per dense block, down path, bottleneck, up path (an odd count; FC-DenseNet103:
            ``(4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4)``).
        growth_rate: maps each dense layer adds (12 or 16); stem_width: the first convolution's (48).
        drop_rate: dropout after every convolution of the blocks and transitions down (0.2).
    """

    def __init__(self, num_classes: int = 11, in_chans: int = 3,
                 blocks: Sequence[int] = (4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), growth_rate: int = 16,
                 stem_width: int = 48, drop_rate: float = 0.2):
        super().__init__()
        blocks = tuple(blocks)
        if len(blocks) < 3 or len(blocks) % 2 == 0 or not all(isinstance(n, int) and n >= 1 for n in blocks):
            raise ValueError(f"blocks must list an odd number (>= 3) of positive layer counts: down path, bottleneck, "
                             f"up path; got {blocks!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        levels = len(blocks) // 2
        self.num_classes, self.growth_rate = num_classes, growth_rate
        self.stem = nn.Conv2d(in_chans, stem_width, 3, padding=1)
        self.down_blocks, self.transitions_down = nn.ModuleList(), nn.ModuleList()
        chs, skips = stem_width, []
        for n in blocks[:levels]:
            block = DenseBlock(chs, n, growth_rate, bn_size=0, drop_rate=drop_rate)
            chs = block.out_chs
            skips.append(chs)
            self.down_blocks.append(block)
            self.transitions_down.append(TransitionDown(chs, drop_rate))
        self.bottleneck = DenseBlock(chs, blocks[levels], growth_rate, bn_size=0, drop_rate=drop_rate)
        self.transitions_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        new = blocks[levels] * growth_rate
        for n, skip in zip(blocks[levels + 1:], reversed(skips)):
            self.transitions_up.append(TransitionUp(new))
            block = DenseBlock(new + skip, n, growth_rate, bn_size=0, drop_rate=drop_rate)
            self.up_blocks.append(block)
            new, chs = n * growth_rate, block.out_chs
        self.classifier = nn.Conv2d(chs, num_classes, 1)
        init_weights(self)

    def _new_maps(self, block: DenseBlock, x: torch.Tensor) -> torch.Tensor:
        """The maps ``block`` created: the last ``layers * growth_rate`` channels of its output."""
        return x[:, x.shape[1] - len(block.layers) * self.growth_rate:]

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        skips = []
        for block, down in zip(self.down_blocks, self.transitions_down):
            x = block(x)
            skips.append(x)
            x = down(x)
        x, last = self.bottleneck(x), self.bottleneck
        for up, block, skip in zip(self.transitions_up, self.up_blocks, reversed(skips)):
            x, last = block(up(self._new_maps(last, x), skip)), block
        return self.classifier(x)


# --- variants -----------------------------------------------------------------------------------

FC_DENSENET_BLOCKS = {
    56: ((4,) * 11, 12),
    67: ((5,) * 11, 16),
    103: ((4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4), 16),
}

card = family_card(
    family="fc_densenet", task="segmentation", year=2016,
    paper="arXiv:1611.09326 The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for Semantic "
          "Segmentation (Jegou, Drozdzal, Vazquez, Romero, Bengio)",
    tricks=("dense_concatenation", "growth_rate", "dense_upsampling_path", "encoder_decoder_skips",
            "fully_convolutional", "preactivation", "batch_norm", "relu", "dropout"),
    dataset="CamVid", num_classes=11, input_size=(3, 360, 480), min_input_size=(3, 32, 32),
    heads=("classifier",), input_convs=("stem",), cam_layer="up_blocks.4",
)

register_variants(FCDenseNet, [
    card(f"fc_densenet{depth}", kwargs={"blocks": blocks, "growth_rate": growth},
         notes=f"Dense blocks of {'/'.join(map(str, blocks))} layers at growth {growth}, 48-map stem; trained from "
               "scratch on CamVid (224x224 crops, then 360x480). Parameters: see the module doc for how they compare "
               "with the paper's (bias-free dense layers and transitions down).")
    for depth, (blocks, growth) in FC_DENSENET_BLOCKS.items()
])
