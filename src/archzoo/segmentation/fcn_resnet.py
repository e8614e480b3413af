"""FCN on a dilated ResNet: torchvision's ``fcn_resnet50`` / ``fcn_resnet101``.

Long, Shelhamer and Darrell ("Fully Convolutional Networks for Semantic Segmentation",
arXiv:1411.4038, CVPR 2015) turned a classifier into a dense predictor: the fully-connected layers
become convolutions, so the net maps an image of any size to a map of class scores, upsampled to
the input and trained with per-pixel cross-entropy. Their VGG nets recover detail with skip
connections from stride-16 and stride-8 maps (``fcn.py``). torchvision's reading, kept here,
instead removes the ResNet's last two strides and dilates its later convolutions (output stride
8, the "hole algorithm" of DeepLab, arXiv:1606.00915): one head on the last map — 3x3 conv to a
quarter of the width, batch norm, ReLU, dropout 0.1, 1x1 classifier — and in training an auxiliary
head of the same shape on ``layer3`` (weighted 0.5 in torchvision's recipe), bilinear upsampling
of both to the input.

The pieces other segmenters reuse live here: :func:`tapped_backbone` (a zoo backbone giving the
maps a head needs) and :class:`SegmenterWithAux` (a backbone, a head on its last map, optional
auxiliary heads on earlier maps), which DeepLab v3 shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn

from ..features import FeatureExtractor, FeatureInfo
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Segmenter, build_backbone
from .heads import FCNHead


def tapped_backbone(backbone: str, taps: Sequence[int], *, first_block: Sequence[int] = (), in_chans: int = 3,
                    output_stride: int | None = None, norm_layer: str | None = None) -> FeatureExtractor:
    """:func:`~archzoo.segmentation.base.build_backbone` giving the maps at ``feature_info`` indices
    ``taps``; a map whose index is also in ``first_block`` is taken after the *first* block of its
    stage, not the last (torchvision's MobileNetV3 segmenters tap ``features[4]``, the first block
    of the stride-8 stage: our ``stages.2.0``). A stage's first block has the stage's width and
    stride in the zoo's stage layouts (one stage is one resolution and one width)."""
    if not first_block:
        return build_backbone(backbone, in_chans, out_indices=taps, output_stride=output_stride,
                              norm_layer=norm_layer)
    from ..builder import create_model

    options = {k: v for k, v in (("output_stride", output_stride), ("norm_layer", norm_layer)) if v is not None}
    model = create_model(backbone, num_classes=0, in_chans=in_chans, **options)  # its classifier is not kept
    entries = [dict(e) for e in model.feature_info]
    n = len(entries)
    for i in first_block:
        if not -n <= i < n:
            raise ValueError(f"first_block index {i} out of range: {backbone} has {n} feature maps")
        entry = entries[i % n]
        stage = model.get_submodule(entry["module"])
        if not isinstance(stage, nn.Sequential) or next(iter(stage._modules), None) != "0":
            raise ValueError(f"{backbone}: feature map {entry['module']!r} is not a stage of blocks (an "
                             "nn.Sequential of numbered blocks), so it has no first block to tap")
        entry["module"] += ".0"
    model.feature_info = FeatureInfo(entries)  # feature_stages() now ends that map at the first block
    return FeatureExtractor(model, taps, copy=False)


class SegmenterWithAux(Segmenter):
    """A backbone, ``head`` on its last map and, with ``aux_logits``, an :class:`FCNHead` in
    ``aux_heads`` on the map at ``aux_index`` (run in training mode only); torchvision's
    ``_SimpleSegmentationModel`` shape. ``make_head(in_chs) -> module`` builds the main head."""

    def __init__(self, make_head: Callable[[int], nn.Module], num_classes: int, in_chans: int, backbone: str,
                 output_stride: int | None, norm_layer: str | None, aux_logits: bool, aux_index: int,
                 aux_first_block: bool, head_norm: str | None):
        super().__init__()
        if aux_logits and aux_index == -1:
            raise ValueError("aux_index must name a feature map before the last (-1 is the main head's)")
        self.num_classes = num_classes
        taps = (aux_index, -1) if aux_logits else (-1,)
        first = (aux_index,) if aux_logits and aux_first_block else ()
        self.backbone = tapped_backbone(backbone, taps, first_block=first, in_chans=in_chans,
                                        output_stride=output_stride, norm_layer=norm_layer)
        chs = self.backbone.feature_info.channels()
        self.head = make_head(chs[-1])
        self.aux_heads = nn.ModuleList([FCNHead(chs[0], num_classes, norm_layer=head_norm)]) if aux_logits else None

    def forward_dense(self, x: torch.Tensor):
        maps = self.backbone(x)
        logits = self.head(maps[-1])
        if self.training and self.aux_heads is not None:
            return logits, [self.aux_heads[0](maps[0])]
        return logits


class DilatedFCN(SegmenterWithAux):
    """FCN with a dilated backbone: :class:`FCNHead` on the last map, an auxiliary one on an earlier map.

    Args:
        num_classes: classes including the background (torchvision's: 21, the VOC classes).
        backbone: a zoo classifier (``resnet50``); ``output_stride``: 8 (``layer3``/``layer4``
            dilated 2 and 4, torchvision's ``replace_stride_with_dilation=[False, True, True]``).
        norm_layer: the backbone's (``None``: its default); ``head_norm``: the heads' (batch norm).
        aux_logits: build the auxiliary head (used in training only); ``aux_index``: the
            ``feature_info`` index it reads (-2: ``layer3``); ``aux_first_block``: after the first
            block of that stage (see :func:`tapped_backbone`).
        dropout: before the classifier (0.1).
    """

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "resnet50",
                 output_stride: int | None = 8, norm_layer: str | None = None, aux_logits: bool = True,
                 aux_index: int = -2, aux_first_block: bool = False, head_norm: str | None = None,
                 dropout: float = 0.1):
        super().__init__(lambda chs: FCNHead(chs, num_classes, dropout=dropout, norm_layer=head_norm), num_classes,
                         in_chans, backbone, output_stride, norm_layer, aux_logits, aux_index, aux_first_block,
                         head_norm)


# --- variants -----------------------------------------------------------------------------------

COCO_VOC = "COCO-2017 (the 20 VOC classes)"

card = family_card(
    family="fcn", arch="fcn_resnet", task="segmentation", year=2014,
    paper="arXiv:1411.4038 Fully Convolutional Networks for Semantic Segmentation (Long, Shelhamer, Darrell)",
    tricks=("fully_convolutional", "atrous_convolution", "auxiliary_classifier", "residual_shortcut", "bottleneck",
            "batch_norm", "relu", "dropout"),
    dataset=COCO_VOC, num_classes=21, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    input_size=(3, 520, 520), min_input_size=(3, 32, 32),
    heads=("head.classifier", "aux_heads.0.classifier"), input_convs=("backbone.model.stem.conv.conv",),
    cam_layer="head.conv",
)
_NOTES = ("torchvision's {0}: ResNet at output stride 8, FCNHead on layer4, auxiliary FCNHead on layer3 in training "
          "(AuxLogits(logits, (aux,)); aux_logits=False builds without it). torchvision resizes to 520.")

register_variants(DilatedFCN, [
    card("fcn_resnet50", reference="torchvision:fcn_resnet50", kwargs=dict(backbone="resnet50"),
         notes=_NOTES.format("fcn_resnet50")),
    card("fcn_resnet101", reference="torchvision:fcn_resnet101", kwargs=dict(backbone="resnet101"),
         notes=_NOTES.format("fcn_resnet101")),
])
