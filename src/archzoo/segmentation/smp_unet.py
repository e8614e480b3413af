"""U-Net on any zoo backbone, as segmentation_models_pytorch (smp) builds it.

The U-Net idea (Ronneberger, Fischer & Brox, arXiv:1505.04597; see :mod:`.unet`) with a
classifier as the contracting path: the backbone's maps at strides 2, 4, 8, 16 and 32 are the
skips, and the decoder only needs their channel list. smp's ``Unet(encoder, classes=K)``, which
these variants equal number for number: five decoder blocks of widths (256, 128, 64, 32, 16),
each upsampling by nearest neighbour to the next skip's size (the last one to the input's),
concatenating the skip and fusing with two 3x3 convolution + batch norm + ReLU; a 3x3
convolution gives the class scores at the input's resolution. Padded convolutions and resizing
to the skip's size: any input size works.

:class:`SmpEncoder` is the encoder smp runs: a zoo classifier's five maps, with smp's two
departures from our :mod:`~archzoo.features` contract — MobileNetV2's last map is its 1x1 head
convolution's output (1280 channels), and a dilated encoder (``output_stride``) dilates *every*
convolution of a stage past the output stride, also the first block that gave up its stride
(torchvision and timm keep that block's previous dilation). DeepLabV3+ (:mod:`.deeplabv3plus`)
reuses it.

Weights convert from smp state dicts (:mod:`archzoo.weights.segmentation_smp`): ``resnet*`` and
``mobilenet_v2`` encoders are torchvision's networks, ``tu-efficientnet_b0`` is timm's
``efficientnet_b0`` (smp's ``efficientnet-b0`` and ``timm-efficientnet-b0`` encoders take the
stride-2 map before the first block, a layout no zoo backbone gives, so they are not offered).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..features import FeatureExtractor
from ..layers import ConvNormAct, create_norm_layer
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Segmenter

#: architectures whose smp encoder runs a module after the last feature stage (its last map)
SMP_TAILS = {"mobilenet_v2": "conv_head"}
SMP_STRIDES = (2, 4, 8, 16, 32)


class SmpEncoder(FeatureExtractor):
    """The five maps (strides 2 .. 32) of zoo classifier ``backbone`` as smp's encoder of that
    network gives them (see the module doc); ``output_stride`` 8 or 16 dilates the later stages
    by smp's rule; ``norm_layer`` and ``drop_path_rate`` (``None``: the family's default) go to
    the classifier. Keys are the classifier's (``model.stem...``, ``model.conv_head...``)."""

    def __init__(self, backbone: str, in_chans: int = 3, out_indices: Sequence[int] | None = None,
                 output_stride: int | None = None, norm_layer: str | None = None, drop_path_rate: float | None = None):
        from ..builder import create_model

        options = {k: v for k, v in (("output_stride", output_stride), ("norm_layer", norm_layer),
                                     ("drop_path_rate", drop_path_rate)) if v is not None}
        classifier = create_model(backbone, in_chans=in_chans, **options)
        nominal = [2 ** (i + 1) for i in range(len(classifier.feature_info))]
        if tuple(nominal) != SMP_STRIDES or classifier.feature_info.strides()[:3] != [2, 4, 8]:
            raise ValueError(f"backbone {backbone!r} has maps at strides {classifier.feature_info.strides()}; an smp "
                             f"encoder needs five, at strides {SMP_STRIDES}")
        super().__init__(classifier, out_indices, copy=False)
        self.tail = SMP_TAILS.get(classifier.card.arch) if self.out_indices[-1] == len(nominal) - 1 else None
        if self.tail:
            head = getattr(classifier, self.tail)
            self.model.add_module(self.tail, head)
            self.feature_info[-1] = {**self.feature_info[-1], "channels": head.out_chs, "module": self.tail}
        if output_stride is not None:
            for stride, stage in zip(nominal, self.plan):
                if stride > output_stride:
                    for path in stage.steps:
                        dilate_all(self.model.get_submodule(path), stride // output_stride)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = super().forward(x)
        if self.tail:
            maps[-1] = getattr(self.model, self.tail)(maps[-1])
        return maps


def dilate_all(module: nn.Module, rate: int) -> None:
    """smp's dilation of a stage: every convolution in ``module`` unstrided, dilated by ``rate``
    and padded to keep the size (the stride was already removed by the backbone's own
    ``output_stride``; this only changes the first block's dilation, which it kept)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1:
            m.stride, m.dilation = (1, 1), (rate, rate)
            m.padding = tuple((k // 2) * rate for k in m.kernel_size)


class UNetDecoderBlock(nn.Module):
    """Upsample (nearest) to the skip's size, concatenate the skip, two 3x3 conv + norm + ReLU."""

    def __init__(self, in_chs: int, skip_chs: int, out_chs: int, norm_layer):
        super().__init__()
        self.conv1 = ConvNormAct(in_chs + skip_chs, out_chs, 3, norm_layer=norm_layer)
        self.conv2 = ConvNormAct(out_chs, out_chs, 3, norm_layer=norm_layer)

    def forward(self, x: torch.Tensor, size: Sequence[int], skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, size=tuple(size), mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """smp's U-Net decoder: takes the encoder's channel list (shallow to deep) only. Block ``i``
    upsamples to the next shallower map and concatenates it; the last block (beyond the
    shallowest map) upsamples to the input's size without a skip."""

    def __init__(self, encoder_channels: Sequence[int], decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 norm_layer: str | None = "batchnorm"):
        super().__init__()
        if len(decoder_channels) != len(encoder_channels):
            raise ValueError(f"decoder_channels needs one width per encoder map ({len(encoder_channels)}), "
                             f"got {tuple(decoder_channels)}")
        norm = create_norm_layer(norm_layer) if norm_layer is not None else None
        deep_first = list(encoder_channels)[::-1]
        ins = [deep_first[0], *decoder_channels[:-1]]
        skips = [*deep_first[1:], 0]
        self.blocks = nn.ModuleList(UNetDecoderBlock(i, s, o, norm) for i, s, o in zip(ins, skips, decoder_channels))

    def forward(self, maps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        deep_first = list(maps)[::-1]
        x, skips = deep_first[0], deep_first[1:]
        sizes = [s.shape[-2:] for s in skips] + [size]
        for i, block in enumerate(self.blocks):
            x = block(x, sizes[i], skips[i] if i < len(skips) else None)
        return x


class EncoderUNet(Segmenter):
    """U-Net with a zoo backbone as encoder (smp's ``Unet``).

    Args:
        num_classes, in_chans: classes and input channels.
        backbone: any zoo classifier with maps at strides 2, 4, 8, 16, 32 (ResNets, MobileNetV2,
            EfficientNets ...).
        decoder_channels: the five decoder blocks' widths, deep to shallow.
        decoder_norm: the decoder's norm (``"batchnorm"``; ``None``: biased convolutions).
        norm_layer, drop_path_rate: the backbone's norm and stochastic depth (``None``: its default).
    """

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "resnet34",
                 decoder_channels: Sequence[int] = (256, 128, 64, 32, 16), decoder_norm: str | None = "batchnorm",
                 norm_layer: str | None = None, drop_path_rate: float | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = SmpEncoder(backbone, in_chans, norm_layer=norm_layer, drop_path_rate=drop_path_rate)
        self.decoder = UNetDecoder(self.backbone.feature_info.channels(), decoder_channels, decoder_norm)
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.backbone(x), x.shape[-2:]))


# --- variants --------------------------------------------------------------------------------

card = family_card(
    family="unet", arch="encoder_unet", year=2015, task="segmentation",
    paper="arXiv:1505.04597 U-Net: Convolutional Networks for Biomedical Image Segmentation (Ronneberger, Fischer, "
          "Brox)",
    tricks=("encoder_decoder_skips", "fully_convolutional", "stacked_3x3_convs", "batch_norm", "relu"),
    dataset="none (architecture only; 21 classes as PASCAL VOC, smp's default is 1)", num_classes=21,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 512, 512), min_input_size=(3, 64, 64),
    input_convs=("backbone.model.stem.conv.conv",), heads=("head",),
)
_NOTE = ("smp's Unet('{enc}', encoder_weights=None, classes=K) number for number: decoder (256, 128, 64, 32, 16) "
         "with batch norm, nearest upsampling, no attention; converts from its state dict. Any input size.")

register_variants(EncoderUNet, [
    card("unet_resnet18", reference="smp:Unet/resnet18", notes=_NOTE.format(enc="resnet18"),
         kwargs=dict(backbone="resnet18")),
    card("unet_resnet34", reference="smp:Unet/resnet34", notes=_NOTE.format(enc="resnet34"),
         kwargs=dict(backbone="resnet34")),
    card("unet_resnet50", reference="smp:Unet/resnet50", notes=_NOTE.format(enc="resnet50"),
         kwargs=dict(backbone="resnet50")),
    card("unet_mobilenet_v2", reference="smp:Unet/mobilenet_v2", input_convs=("backbone.model.stem.conv",),
         notes=_NOTE.format(enc="mobilenet_v2") + " The last skip is MobileNetV2's 1x1 head convolution (1280 "
                                                  "channels), as smp's encoder gives it.",
         kwargs=dict(backbone="mobilenet_v2")),
    card("unet_efficientnet_b0", reference="smp:Unet/tu-efficientnet_b0", input_convs=("backbone.model.stem.conv",),
         notes=_NOTE.format(enc="tu-efficientnet_b0") + " The encoder is timm's efficientnet_b0 (smp's "
               "'efficientnet-b0' and 'timm-efficientnet-b0' take the stride-2 map before the first block and "
               "do not convert). No stochastic depth, as timm's default there (drop_path_rate=0.2 for torchvision's).",
         kwargs=dict(backbone="efficientnet_b0", drop_path_rate=0.0)),
])
