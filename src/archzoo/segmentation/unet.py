"""U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", arXiv:1505.04597, MICCAI 2015).

An encoder-decoder for dense prediction trained from very few images (30 EM slices). A
contracting path (two 3x3 convolutions + ReLU, then 2x2 max-pool, doubling the width 64 ->
1024) is mirrored by an expanding path: a 2x2 up-convolution halves the width and doubles the
size, the encoder's map of that resolution is concatenated to it (the skip), and two 3x3
convolutions fuse them; a 1x1 convolution gives the class scores. The skips carry the
localisation the pooled path loses, so the output is sharp without a CRF.

The paper's convolutions are unpadded ("valid"): a 572x572 tile gives a 388x388 map, 92 pixels
lost on each side, and every skip is centre-cropped before it is concatenated. A large image is
segmented by *overlap-tile* (the paper's Figure 2): the image is mirrored at its border by that
margin and cut into input tiles whose valid outputs tile the image (:func:`overlap_tile`).

Registered:

* ``unet_original`` — the paper's net: unpadded, biased convolutions, no normalisation, dropout
  0.5 at the end of the contracting path, 1 input channel, 2 classes (Figure 1: 31,030,658
  parameters). To keep the segmenter contract (logits at the input's size) its ``forward`` is
  overlap-tile with a single tile: the input is mirrored by the 92-pixel margin (and up to a
  valid tile size) and the valid output cropped to the input; :meth:`UNet.forward_valid` is the
  raw net (572 -> 388).
* ``unet`` — the padded variant everyone trains today: "same" 3x3 convolutions (output size =
  input size, skips concatenated uncropped) with batch norm after every convolution. Batch norm
  is the default because it trains better from scratch on small data. Measured on the ISBI 2012
  membrane slices (20 for training, 5 held out, downscaled to 256x256), ``base_width=16``, 150
  Adam steps (lr 1e-3) on batches of four 128x128 crops, one seed: with batch norm the training
  loss fell 0.55 -> 0.22 and the held-out mean IoU reached 0.76 (pixel accuracy 0.91); without,
  0.60 -> 0.28 and 0.66 (0.88). ``norm_layer=None`` gives the paper's biased, unnormalised
  convolutions.
* ``unet_small`` — ``unet`` at ``base_width=16`` (1/16 of the compute and parameters): trains on
  512x512 grey slices on a CPU.

``base_width`` (64) sets every width (``base_width * 2**level``); ``depth`` (4) the number of
poolings.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import ConvNormAct, create_norm_layer
from ..registry import family_card, register_variants
from .base import Segmenter

GREY_MEAN, GREY_STD = (0.5,), (0.5,)


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (norm and) ReLU: one level of either path."""

    def __init__(self, in_chs: int, out_chs: int, padding: int, norm_layer: Callable[..., nn.Module] | None):
        super().__init__()
        self.conv1 = ConvNormAct(in_chs, out_chs, 3, padding=padding, norm_layer=norm_layer)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, padding=padding, norm_layer=norm_layer)


def crop_and_concatenate(skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``cat([skip, up])`` along channels, the skip centre-cropped to ``up``'s size (in the
    unpadded net the encoder's map is larger than the upsampled one)."""
    dh, dw = skip.shape[-2] - up.shape[-2], skip.shape[-1] - up.shape[-1]
    if dh < 0 or dw < 0:
        raise ValueError(f"the skip {tuple(skip.shape[-2:])} is smaller than the upsampled map {tuple(up.shape[-2:])}")
    return torch.cat([skip[..., dh // 2: dh // 2 + up.shape[-2], dw // 2: dw // 2 + up.shape[-1]], up], dim=1)


def pad_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``x`` zero-padded (centred) to ``size``: the padded net's upsampled map on an odd-sized
    level (pooling dropped its last row or column) is brought back to the skip's size."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)) if dh or dw else x


class UNet(Segmenter):
    """The U-Net of Figure 1 (see the module doc).

    Args:
        num_classes: output classes (the paper: 2, membrane and cell).
        in_chans: input channels (the paper: 1, grey EM slices).
        base_width: the first level's width; level ``l`` has ``base_width * 2**l`` (64 .. 1024).
        depth: number of 2x2 poolings (4).
        padding: ``True``: "same" 3x3 convolutions, the output as large as the input;
            ``False``: the paper's unpadded ones (see :meth:`forward_valid` and :func:`overlap_tile`).
        norm_layer: ``"batchnorm"``, ``"groupnorm"``, ... after every 3x3 convolution, or ``None``
            (the paper: biased convolutions, no normalisation).
        drop_rate: dropout on the outputs of the two deepest contracting levels (the paper's
            "drop-out layers at the end of the contracting path").
    """

    def __init__(self, num_classes: int = 2, in_chans: int = 1, base_width: int = 64, depth: int = 4,
                 padding: bool = True, norm_layer: str | None = "batchnorm", drop_rate: float = 0.0):
        super().__init__()
        for arg, value in (("base_width", base_width), ("depth", depth), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive integer, got {value!r}")
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        self.num_classes, self.depth, self.padding = num_classes, depth, bool(padding)
        norm = create_norm_layer(norm_layer) if norm_layer is not None else None
        pad = 1 if padding else 0
        widths = [base_width * 2**level for level in range(depth + 1)]
        ins = [in_chans] + widths[:-1]
        self.encoder = nn.ModuleList(DoubleConv(c_in, c_out, pad, norm) for c_in, c_out in zip(ins, widths))
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(drop_rate)
        levels = list(reversed(range(depth)))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in levels)
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[i], widths[i], pad, norm) for i in levels)
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        smallest = tile_input_size(1, depth)
        self.margin = 0 if padding else (smallest - valid_output_size(smallest, depth)) // 2  # 92 at depth 4
        _init_weights(self)

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """The net itself: for the unpadded net a valid tile (572) gives the valid map (388),
        ``2 * margin`` smaller; the padded net keeps the size."""
        if not self.padding:
            check_tile(x.shape[-2:], self.depth)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x if level == 0 else self.pool(x))
            if level >= self.depth - 1:  # the end of the contracting path
                x = self.drop(x)
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.up, self.decoder):
            skip, x = skips.pop(), up(x)
            x = block(crop_and_concatenate(skip, pad_to(x, skip.shape[-2:]) if self.padding else x))
        return self.head(x)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at the input's size: the padded net as it is, the unpadded one by overlap-tile
        with one tile covering the input (mirrored by the margin)."""
        if self.padding:
            return self.forward_valid(x)
        return overlap_tile(self, x, tile=None)


def _init_weights(model: nn.Module) -> None:
    """The paper's initialisation: normal with std ``sqrt(2 / N)``, ``N`` the inputs of one unit
    (``9 * 64 = 576`` for a 3x3 convolution on 64 channels; a 2x2/2 up-convolution's unit sees
    ``in_channels``); zero biases, unit norms."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            kh, kw = m.kernel_size
            fan_in = m.in_channels // m.groups * kh * kw
            if isinstance(m, nn.ConvTranspose2d):
                fan_in //= m.stride[0] * m.stride[1]
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- overlap-tile: the unpadded net on an image of any size ------------------------------------

def valid_output_size(size: int, depth: int = 4) -> int | None:
    """The output side of the unpadded net for an input side ``size`` (572 -> 388), or ``None``
    when ``size`` is not a valid tile: every 2x2 pooling needs an even map, and every map at
    least one pixel."""
    for _ in range(depth):
        size -= 4  # two unpadded 3x3 convolutions
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        if size <= 0:
            return None
        size = 2 * size - 4
    return size if size > 0 else None


def tile_input_size(output: int, depth: int = 4) -> int:
    """The smallest valid input tile whose valid output is at least ``output`` pixels."""
    size = max(int(output), 1)
    while valid_output_size(size, depth) is None or valid_output_size(size, depth) < output:
        size += 1
    return size


def check_tile(size: Sequence[int], depth: int = 4) -> None:
    """Raise a ``ValueError`` unless ``(h, w)`` is a valid input tile of the unpadded net."""
    bad = [s for s in size if valid_output_size(int(s), depth) is None]
    if bad:
        smallest = tile_input_size(1, depth)
        raise ValueError(f"input size {tuple(int(s) for s in size)} is not a valid tile of the unpadded U-Net (depth "
                         f"{depth}): every 2x2 max-pooling needs an even map; valid sides are {smallest}, "
                         f"{smallest + 2**depth}, {smallest + 2 * 2**depth}, ... (572 in the paper)")


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """``x`` extended by mirroring at its border (reflection without repeating the edge pixel), as
    the paper extrapolates the missing context; repeated reflections when a pad exceeds the
    image (a 1-pixel side is replicated)."""
    for dim, before, after in ((-2, top, bottom), (-1, left, right)):
        while before > 0 or after > 0:
            n = x.shape[dim]
            b, a = min(before, max(n - 1, 1)), min(after, max(n - 1, 1))
            pad = (b, a, 0, 0) if dim == -1 else (0, 0, b, a)
            x = F.pad(x, pad, mode="reflect" if n > 1 else "replicate")
            before, after = before - b, after - a
    return x


def overlap_tile(model: UNet, image: torch.Tensor, tile: int | tuple[int, int] | None = 572) -> torch.Tensor:
    """Segment ``image`` ``[B, C, H, W]`` of any size with the unpadded ``model`` (the paper's
    Figure 2): logits ``[B, K, H, W]``.

    The image is mirrored by the net's margin (92 pixels at depth 4) and cut into input tiles of
    side ``tile`` (a valid tile size, e.g. 572; ``None``: one tile covering the whole image). Tile
    starts are multiples of ``2**depth`` so every tile pools on the same grid: the tiled result
    equals one pass over the whole mirrored image (tiles overlap by a few output pixels when the
    valid output is not such a multiple, 388 -> steps of 384).
    """
    if model.padding:
        raise ValueError("overlap_tile is for the unpadded U-Net (padding=False); a padded U-Net takes any size")
    h, w = image.shape[-2:]
    m, grid = model.margin, 2**model.depth
    if tile is None:
        tiles = (tile_input_size(h, model.depth), tile_input_size(w, model.depth))
    else:
        tiles = (tile, tile) if isinstance(tile, int) else tuple(tile)
        check_tile(tiles, model.depth)
    outs = [valid_output_size(t, model.depth) for t in tiles]
    if min(outs) < grid:
        least = tile_input_size(grid, model.depth)
        raise ValueError(f"tile {tile}: its valid output ({min(outs)} px) must be at least 2**depth = {grid} px so "
                         f"tiles can step on the pooling grid; use a tile of at least {least}")
    steps = [o // grid * grid for o in outs]
    counts = [1 + max(0, math.ceil((n - o) / s)) for n, o, s in zip((h, w), outs, steps)]
    covered = [(c - 1) * s + o for c, s, o in zip(counts, steps, outs)]
    padded = mirror_pad(image, m, m + covered[0] - h, m, m + covered[1] - w)
    out = image.new_empty(image.shape[0], model.num_classes, *covered)
    for i in range(counts[0]):
        for j in range(counts[1]):
            y, x = i * steps[0], j * steps[1]
            crop = padded[..., y: y + tiles[0], x: x + tiles[1]]
            out[..., y: y + outs[0], x: x + outs[1]] = model.forward_valid(crop)
    return out[..., :h, :w]


# --- variants --------------------------------------------------------------------------------

card = family_card(
    family="unet", year=2015, task="segmentation",
    paper="arXiv:1505.04597 U-Net: Convolutional Networks for Biomedical Image Segmentation (Ronneberger, Fischer, "
          "Brox)",
    tricks=("encoder_decoder_skips", "fully_convolutional", "stacked_3x3_convs", "deconvolution_upsampling", "relu"),
    dataset="ISBI 2012 EM (2 classes)", num_classes=2, mean=GREY_MEAN, std=GREY_STD,
    input_convs=("encoder.0.conv1.conv",), heads=("head",),
)

register_variants(UNet, [
    card("unet_original", input_size=(1, 572, 572), min_input_size=(1, 32, 32),
         extra_tricks=("crop_and_concatenate", "overlap_tile", "dropout"),
         notes="The paper's net: unpadded 3x3 convolutions with bias, no normalisation, dropout 0.5 at the end of "
               "the contracting path. forward(x) mirrors the input by 92 px (and up to a valid tile) and crops the "
               "valid output to the input's size (overlap-tile with one tile); forward_valid is the raw 572 -> 388 "
               "net; overlap_tile(model, image, tile=572) tiles large images. Grey input (in_chans 1), mean/std 0.5.",
         kwargs=dict(padding=False, norm_layer=None, drop_rate=0.5)),
    card("unet", input_size=(1, 512, 512), min_input_size=(1, 32, 32), extra_tricks=("batch_norm",),
         notes="The padded variant: 'same' 3x3 convolutions (output = input size), batch norm after every "
               "convolution (trains best from scratch on small data; norm_layer=None for the paper's biased, "
               "unnormalised convolutions). base_width (64) scales every width. Grey input (in_chans 1), mean/std 0.5.",
         kwargs=dict(padding=True, norm_layer="batchnorm")),
    card("unet_small", input_size=(1, 512, 512), min_input_size=(1, 32, 32), extra_tricks=("batch_norm",),
         notes="unet at base_width 16 (widths 16..256, 1/16 of the parameters and compute): trains on 512x512 "
               "grey slices on a CPU.",
         kwargs=dict(padding=True, norm_layer="batchnorm", base_width=16)),
])
