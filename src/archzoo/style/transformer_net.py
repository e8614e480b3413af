"""Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", ECCV 2016, arXiv:1603.08155.

A feed-forward "image transformation network" trained for one style with the perceptual loss of
Gatys et al. (content and Gram-matrix style losses in a fixed VGG-16, relu2_2 for content,
relu1_2/relu2_2/relu3_3/relu4_3 for style, plus total variation): once trained, a picture is
stylised in one forward pass instead of hundreds of optimisation steps. The network (the paper's
supplementary material): a 9x9 convolution (32), two stride-2 3x3 convolutions (64, 128), five
residual blocks (two 3x3 convolutions each, after Gross & Wilber's), two stride-1/2
(transposed) 3x3 convolutions (64, 32) and a 9x9 convolution back to RGB, squashed to 0..1 by a
scaled tanh. Reflection padding in every convolution, where the paper pads the input by 40
pixels once and lets the residual blocks shrink the maps (valid convolutions).

Instance normalisation instead of the paper's batch normalisation is Ulyanov, Vedaldi &
Lempitsky's improvement ("Instance Normalization: The Missing Ingredient for Fast Stylization",
arXiv:1607.08022): normalising each picture by its own statistics removes its contrast, which
the style should set, and gives visibly better pictures; ``norm="batch"`` builds the original.

Inputs are pictures in 0..1 (mean 0, std 1 on the card); outputs too, of the input's size: a side
that is not a multiple of 4 is rounded up by the strided layers and the extra rows cropped.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import family_card, register_variants
from ..validate import UserError

NORMS = {"instance": lambda c: nn.InstanceNorm2d(c, affine=True), "batch": nn.BatchNorm2d}


class ConvNormReLU(nn.Sequential):
    """Reflection-padded convolution -> norm -> ReLU (no norm or ReLU where ``norm``/``act`` is False)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, norm: str = "instance",
                 act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, padding_mode="reflect")
        if norm:
            self.norm = NORMS[norm](out_chs)
        if act:
            self.act = nn.ReLU(inplace=True)


class ResidualBlock(nn.Module):
    """``x + norm(conv(relu(norm(conv(x)))))``: no ReLU after the sum, as in the paper."""

    def __init__(self, channels: int, norm: str = "instance"):
        super().__init__()
        self.conv1 = ConvNormReLU(channels, channels, 3, norm=norm)
        self.conv2 = ConvNormReLU(channels, channels, 3, norm=norm, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class UpConvNormReLU(nn.Sequential):
    """A stride-1/2 convolution (transposed, 3x3, exactly doubling the size) -> norm -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, norm: str = "instance"):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_chs, out_chs, 3, stride=2, padding=1, output_padding=1)
        self.norm = NORMS[norm](out_chs)
        self.act = nn.ReLU(inplace=True)


class TransformerNet(nn.Module):
    """The image transformation network: picture in 0..1 -> stylised picture in 0..1, same size.

    Args:
        widths: channels after the first convolution and each downsampling (32, 64, 128).
        num_blocks: residual blocks at the lowest resolution (5).
        norm: ``"instance"`` (Ulyanov et al.; default) or ``"batch"`` (the paper's).
        in_chans: picture channels (3; the output has as many).
        num_classes: a style net has no classes: 0 only.
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 128), num_blocks: int = 5, norm: str = "instance",
                 in_chans: int = 3, num_classes: int = 0):
        super().__init__()
        if num_classes:
            raise UserError(f"num_classes: a style transfer net has no classes (it outputs a picture); got {num_classes}")
        if norm not in NORMS:
            raise UserError(f"norm: must be one of {', '.join(NORMS)}, got {norm!r}")
        w1, w2, w3 = widths
        self.down = nn.Sequential(
            ConvNormReLU(in_chans, w1, 9, norm=norm),
            ConvNormReLU(w1, w2, 3, stride=2, norm=norm),
            ConvNormReLU(w2, w3, 3, stride=2, norm=norm),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(w3, norm) for _ in range(num_blocks)])
        self.up = nn.Sequential(UpConvNormReLU(w3, w2, norm), UpConvNormReLU(w2, w1, norm))
        self.out = ConvNormReLU(w1, in_chans, 9, norm="", act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = self.out(self.up(self.blocks(self.down(x))))
        return (torch.tanh(y[..., :h, :w]) + 1) / 2


card = family_card(
    input_convs=("down.0.conv",),
    heads=("out.conv",),
    family="johnson_transformer_net",
    task="style_transfer",
    year=2016,
    paper="arXiv:1603.08155 Perceptual Losses for Real-Time Style Transfer and Super-Resolution (Johnson, Alahi & "
          "Fei-Fei); instance norm: arXiv:1607.08022 (Ulyanov, Vedaldi & Lempitsky)",
    tricks=("residual_shortcut", "relu", "instance_norm", "deconvolution_upsampling", "perceptual_loss",
            "gram_matrix_style_loss"),
    dataset="trained per style on content photos (archzoo stylize --train)",
    num_classes=0,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_size=(3, 256, 256),
    min_input_size=(3, 32, 32),
)

register_variants(TransformerNet, [
    card("johnson_transformer_net",
         notes="Picture in 0..1 -> stylised picture in 0..1 of the same size (any size >= 32 px). Instance norm "
               "(Ulyanov et al.) instead of the paper's batch norm (model kwarg norm='batch' builds the original). "
               "Trained for one style with archzoo stylize --train STYLE; applied with archzoo stylize CONTENT "
               "--model RUN/model.safetensors. heads: the output convolution (the net has no classes)."),
])
