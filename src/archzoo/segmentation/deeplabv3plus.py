"""DeepLabV3+ (Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", arXiv:1802.02611, ECCV 2018).

DeepLab v3 (:mod:`.deeplab`) predicts at output stride 16 and upsamples 16x: object boundaries
come out blurred. v3+ keeps its encoder (a dilated backbone and atrous spatial pyramid pooling)
and adds a small decoder: the ASPP output is upsampled 4x and concatenated with the backbone's
stride-4 map, first projected by a 1x1 convolution to 48 channels so the fine features do not
outweigh the semantic ones; a 3x3 convolution fuses them and the logits are upsampled 4x more.
The 3x3 convolutions of ASPP and decoder are depthwise-separable (atrous separable
convolution): the same field of view at a fraction of the cost.

The variants equal segmentation_models_pytorch's ``DeepLabV3Plus(encoder, classes=K)`` number
for number (and convert from its state dicts): encoder output stride 16 dilated by smp's rule
(:class:`~archzoo.segmentation.smp_unet.SmpEncoder`), separable ASPP at rates 12, 24, 36 with
256 channels and dropout 0.5, a separable 3x3 after it, a 48-channel 1x1 projection of the
stride-4 map, a separable 3x3 fusing both, a 1x1 classifier, and bilinear upsampling with
``align_corners=True`` (smp's ``UpsamplingBilinear2d``). smp's separable convolutions have no
norm between the depthwise and pointwise convolutions (the paper's TensorFlow code has one).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..layers import ConvNormAct
from ..models.base import init_weights
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Segmenter, upsample_like
from .heads import ASPP, SeparableConvNormAct, head_norm
from .smp_unet import SmpEncoder


class DeepLabV3PlusDecoder(nn.Module):
    """``aspp`` (separable) -> ``aspp_conv`` (separable 3x3) -> upsample to the stride-4 map ->
    concatenate with ``low_level`` (1x1 projection of that map) -> ``fuse`` (separable 3x3)."""

    def __init__(self, low_chs: int, high_chs: int, out_chs: int = 256, rates: Sequence[int] = (12, 24, 36),
                 low_level_chs: int = 48, dropout: float = 0.5, norm_layer: str | None = None):
        super().__init__()
        norm = head_norm(norm_layer)
        self.aspp = ASPP(high_chs, out_chs, rates, separable=True, dropout=dropout, norm_layer=norm)
        self.aspp_conv = SeparableConvNormAct(out_chs, out_chs, 3, norm_layer=norm)
        self.low_level = ConvNormAct(low_chs, low_level_chs, 1, norm_layer=norm)
        self.fuse = SeparableConvNormAct(out_chs + low_level_chs, out_chs, 3, norm_layer=norm)
        init_weights(self)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        high = upsample_like(self.aspp_conv(self.aspp(high)), low.shape[-2:], align_corners=True)
        return self.fuse(torch.cat([high, self.low_level(low)], dim=1))


class DeepLabV3Plus(Segmenter):
    """A dilated zoo backbone's stride-4 and deepest maps -> :class:`DeepLabV3PlusDecoder` -> 1x1
    ``head`` at stride 4 -> bilinear upsampling (``align_corners=True``) to the input.

    Args:
        num_classes, in_chans: classes and input channels.
        backbone: a zoo classifier with maps at strides 2 .. 32 (ResNets, MobileNetV2 ...).
        output_stride: the encoder's (16; 8 doubles every dilation).
        atrous_rates: the ASPP's dilations (smp: 12, 24, 36; the paper: 6, 12, 18 at stride 16).
        decoder_chs: ASPP and decoder width (256); ``low_level_chs``: the stride-4 projection (48).
        drop_rate: dropout after the ASPP projection (0.5).
        norm_layer, drop_path_rate: the backbone's norm and stochastic depth (``None``: its default);
            ``head_norm``: the decoder's norm.
    """

    align_corners = True

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "resnet50", output_stride: int = 16,
                 atrous_rates: Sequence[int] = (12, 24, 36), decoder_chs: int = 256, low_level_chs: int = 48,
                 drop_rate: float = 0.5, norm_layer: str | None = None, drop_path_rate: float | None = None,
                 head_norm: str | None = None):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16 for DeepLabV3+, got {output_stride!r}")
        self.num_classes = num_classes
        self.backbone = SmpEncoder(backbone, in_chans, out_indices=(1, 4), output_stride=output_stride,
                                   norm_layer=norm_layer, drop_path_rate=drop_path_rate)
        low_chs, high_chs = self.backbone.feature_info.channels()
        self.decoder = DeepLabV3PlusDecoder(low_chs, high_chs, decoder_chs, tuple(atrous_rates), low_level_chs,
                                            drop_rate, head_norm)
        self.head = nn.Conv2d(decoder_chs, num_classes, 1)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(*self.backbone(x)))


# --- variants --------------------------------------------------------------------------------

card = family_card(
    family="deeplabv3plus", year=2018, task="segmentation",
    paper="arXiv:1802.02611 Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation "
          "(Chen, Zhu, Papandreou, Schroff, Adam)",
    tricks=("atrous_separable_convolution", "atrous_spatial_pyramid_pooling", "image_pooling", "atrous_convolution",
            "encoder_decoder_skips", "depthwise_separable_conv", "pointwise_conv", "fully_convolutional",
            "batch_norm", "relu", "dropout"),
    dataset="none (architecture only; 21 classes as PASCAL VOC, smp's default is 1)", num_classes=21,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 512, 512), min_input_size=(3, 64, 64),
    input_convs=("backbone.model.stem.conv.conv",), heads=("head",),
)
_NOTE = ("smp's DeepLabV3Plus('{enc}', encoder_weights=None, classes=K) number for number (encoder output stride 16, "
         "separable ASPP at 12, 24, 36); converts from its state dict. Input sides divisible by 16 match smp exactly "
         "(smp requires them; ours resizes to the stride-4 map for any size).")

register_variants(DeepLabV3Plus, [
    card("deeplabv3plus_resnet50", reference="smp:DeepLabV3Plus/resnet50", notes=_NOTE.format(enc="resnet50"),
         extra_tricks=("residual_shortcut", "bottleneck"), kwargs=dict(backbone="resnet50")),
    card("deeplabv3plus_resnet101", reference="smp:DeepLabV3Plus/resnet101", notes=_NOTE.format(enc="resnet101"),
         extra_tricks=("residual_shortcut", "bottleneck"), kwargs=dict(backbone="resnet101")),
    card("deeplabv3plus_mobilenet_v2", reference="smp:DeepLabV3Plus/mobilenet_v2",
         input_convs=("backbone.model.stem.conv",),
         notes=_NOTE.format(enc="mobilenet_v2") + " The deep map is MobileNetV2's 1x1 head convolution (1280 "
                                                  "channels), as smp's encoder gives it.",
         extra_tricks=("inverted_residual", "linear_bottleneck", "relu6"), kwargs=dict(backbone="mobilenet_v2")),
])
