"""SRDenseNet — Tong, Li, Liu & Gao, "Image Super-Resolution Using Dense Skip Connections", ICCV 2017.

Added dense connectivity to single-image super-resolution: the network works on the
low-resolution (LR) luminance and upsamples only at its end with learned deconvolutions, so
every dense layer is cheap (a 4x net's features are 16x smaller than the output); and, in
SRDenseNet_All, *dense skip connections* between blocks: each block reads the low-level features
and the outputs of every earlier block, and all of them reach the reconstruction.

Structure (section 3, figure 2 (c); all convolutions 3x3 with biases, each followed by a ReLU
except the reconstruction; no batch norm):

* low-level features: one convolution, ``in_chans -> 128``;
* 8 dense blocks of 8 layers, growth rate 16: the first layer reads the block's input, every
  later one the concatenation of the block's earlier layers (the zoo's
  :class:`~archzoo.layers.DenseBlock` over the first layer's 16 maps); a block gives the
  concatenation of its 8 layers' outputs, ``8 * 16 = 128`` maps;
* ``skip="all"`` (SRDenseNet_All, the default): block ``b`` reads the concatenation of the
  low-level features and blocks ``1..b-1``; the low-level features and all 8 blocks
  (``128 + 8 * 128 = 1152`` maps) go through a 1x1 bottleneck to 256 maps. ``"hl"``
  (SRDenseNet_HL): blocks are chained; the low-level features and the last block's (256 maps)
  go to the deconvolutions. ``"h"`` (SRDenseNet_H): only the last block's 128 maps;
* ``log2(scale)`` deconvolutions (transposed convolutions, stride 2, 256 maps): two for x4,
  one for x2;
* reconstruction: one convolution ``256 -> in_chans`` in high resolution.

The paper trains on the Y channel of YCbCr (``in_chans=1``, values ``Y / 255``) with an L2 loss
on 100x100 HR patches (25x25 LR for x4). Parameter count of x4 All on Y: 2,659,585 (by hand in
``tests/test_superres.py``; the paper's text gives no total, see ``docs/super_resolution.md``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import DenseBlock
from ..registry import family_card, register_variants
from ..validate import UserError

SKIPS = ("all", "hl", "h")


class ConvReLU(nn.Sequential):
    """Conv ``k x k`` (with bias) -> ReLU: SRDenseNet's unit, post-activation and without norm."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU(inplace=True)


class SRDenseBlock(nn.Module):
    """8 densely connected Conv3x3-ReLU layers; the output is their ``num_layers * growth_rate`` maps
    (the block's input is seen by the first layer only and is not passed on: the dense skip
    connections between blocks carry it)."""

    def __init__(self, in_chs: int, num_layers: int = 8, growth_rate: int = 16):
        super().__init__()
        self.first = ConvReLU(in_chs, growth_rate)
        self.dense = DenseBlock(growth_rate, num_layers - 1, growth_rate, layer=ConvReLU)
        self.out_chs = num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.first(x))


class Deconv(nn.Sequential):
    """Transposed convolution, stride 2 (exactly doubles the side for any ``kernel_size``) -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_chs, out_chs, kernel_size, stride=2, padding=(kernel_size - 1) // 2,
                                         output_padding=kernel_size % 2)
        self.act = nn.ReLU(inplace=True)


class SRDenseNet(nn.Module):
    """LR image ``[B, C, h, w]`` (values in [0, 1]) -> HR image ``[B, C, scale * h, scale * w]``.

    Args:
        scale: upscaling factor, a power of two (one deconvolution per factor 2).
        in_chans: image channels (1: the Y channel, as the paper; 3: RGB).
        num_classes: must be 0 (a super-resolution net has no classes).
        growth_rate, num_blocks, num_layers: the dense part (16, 8, 8 in the paper).
        low_chs: maps of the low-level convolution (128).
        bottleneck_chs: maps of the 1x1 bottleneck and of the deconvolutions (256).
        skip: ``"all"`` (dense skip connections, SRDenseNet_All), ``"hl"`` or ``"h"`` (see the module doc).
        deconv_kernel: kernel side of the deconvolutions (3, as every other kernel but the bottleneck's).
        residual: add the bicubic upsampling of the input to the output, so the net learns only the
            missing detail (global residual learning, Kim et al. 2016, VDSR; not in SRDenseNet: off).
    """

    def __init__(self, scale: int = 4, in_chans: int = 1, num_classes: int = 0, growth_rate: int = 16,
                 num_blocks: int = 8, num_layers: int = 8, low_chs: int = 128, bottleneck_chs: int = 256,
                 skip: str = "all", deconv_kernel: int = 3, residual: bool = False):
        super().__init__()
        if scale not in (2, 4, 8):
            raise UserError(f"scale: SRDenseNet upsamples by deconvolutions of stride 2, so scale must be 2, 4 or 8, "
                            f"got {scale!r}")
        if num_classes:
            raise UserError(f"num_classes: a super-resolution net has no classes, got {num_classes!r}")
        if skip not in SKIPS:
            raise UserError(f"skip: must be one of {', '.join(SKIPS)} (SRDenseNet_All, _HL, _H), got {skip!r}")
        for name, value in (("growth_rate", growth_rate), ("num_blocks", num_blocks), ("num_layers", num_layers),
                            ("low_chs", low_chs), ("bottleneck_chs", bottleneck_chs), ("deconv_kernel", deconv_kernel)):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{name}: must be a whole number >= 1, got {value!r}")
        self.scale, self.skip, self.in_chans, self.residual = scale, skip, in_chans, bool(residual)
        self.stem = ConvReLU(in_chans, low_chs)
        block_out = num_layers * growth_rate
        blocks, chs = [], low_chs
        for _ in range(num_blocks):
            blocks.append(SRDenseBlock(chs, num_layers, growth_rate))
            chs = chs + block_out if skip == "all" else block_out
        self.blocks = nn.ModuleList(blocks)
        if skip == "all":  # 1x1 bottleneck over everything: 128 + 8 * 128 = 1152 -> 256
            self.bottleneck = ConvReLU(chs, bottleneck_chs, kernel_size=1)
            up_in = bottleneck_chs
        else:
            self.bottleneck = None
            up_in = block_out + (low_chs if skip == "hl" else 0)
        ups = []
        for _ in range(scale.bit_length() - 1):
            ups.append(Deconv(up_in, bottleneck_chs, deconv_kernel))
            up_in = bottleneck_chs
        self.upsample = nn.Sequential(*ups)
        self.reconstruction = nn.Conv2d(bottleneck_chs, in_chans, 3, padding=1)
        for m in self.modules():  # He initialisation for the ReLU net (the paper's, after He et al. 2015)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.reconstruction.weight, std=1e-3)  # the output starts near 0, not at a random image

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The LR feature map the deconvolutions upsample (256 maps for All)."""
        low = self.stem(x)
        if self.skip == "all":
            feats = low
            for block in self.blocks:
                feats = torch.cat([feats, block(feats)], 1)
            return self.bottleneck(feats)
        h = low
        for block in self.blocks:
            h = block(h)
        return torch.cat([low, h], 1) if self.skip == "hl" else h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.reconstruction(self.upsample(self.forward_features(x)))
        if self.residual:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out


card = family_card(
    family="srdensenet",
    year=2017,
    task="super_resolution",
    paper="Tong, Li, Liu & Gao, Image Super-Resolution Using Dense Skip Connections, ICCV 2017",
    tricks=("dense_concatenation", "growth_rate", "dense_skip_connections", "pointwise_conv", "post_upsampling",
            "stacked_3x3_convs", "relu"),
    input_convs=("stem.conv",),
    heads=("reconstruction",),
    dataset="ImageNet (50,000 random images, Y channel)",
    num_classes=0,
    mean=(0.0,),
    std=(1.0,),
)

register_variants(SRDenseNet, [
    card("srdensenet_x4", input_size=(1, 25, 25), min_input_size=(1, 8, 8), kwargs={"scale": 4},
         notes="SRDenseNet_All for 4x: 128 low-level maps, 8 dense blocks x 8 Conv3x3-ReLU (growth 16) with dense skip "
               "connections, 1x1 bottleneck 1152 -> 256, two 3x3 stride-2 deconvolutions, 3x3 reconstruction. Input: "
               "the LR Y channel (Y / 255, ITU-R BT.601 as MATLAB's rgb2ycbcr), 25x25 patches (100x100 HR); output 4x "
               "larger. skip='hl' / 'h' build SRDenseNet_HL / _H. archzoo predict handles RGB photos (Y by the net, "
               "CbCr bicubic)."),
    card("srdensenet_x2", input_size=(1, 50, 50), min_input_size=(1, 8, 8), kwargs={"scale": 2},
         notes="srdensenet_x4 with one deconvolution: 2x. The paper reports 4x only; x2 is the same net, one "
               "upsampling step fewer."),
])
