"""DeepLab v3: torchvision's ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` / ``deeplabv3_mobilenet_v3_large``.

Chen, Papandreou, Schroff and Adam ("Rethinking Atrous Convolution for Semantic Image
Segmentation", arXiv:1706.05587, 2017) keep DeepLab's dilated backbone (output stride 16 or 8:
the last strides replaced by atrous convolution, so the maps stay fine without losing the
receptive field) and rework atrous spatial pyramid pooling (:class:`~archzoo.segmentation.heads.ASPP`,
from DeepLab v2, arXiv:1606.00915): a 1x1 branch, three 3x3 branches at rates 6, 12, 18 (doubled
at output stride 8), all with batch norm, and image-level features (global pooling, 1x1 conv,
broadcast back) that supply the context very large rates lose at the borders. The branches are
concatenated, projected by a 1x1 conv and classified; the logits are upsampled bilinearly. DenseCRF
post-processing of v1/v2 is dropped.

torchvision's models (kept here number for number): rates 12, 24, 36 on all three backbones,
dropout 0.5 after the projection, a 3x3 conv before the classifier, and in training an auxiliary
:class:`~archzoo.segmentation.heads.FCNHead` on ``layer3`` (ResNets, output stride 8) or on the first
block of MobileNetV3-Large's stride-8 stage (output stride 16, ``dilated=True``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .fcn_resnet import COCO_VOC, SegmenterWithAux
from .heads import DeepLabHead


class DeepLabV3(SegmenterWithAux):
    """A dilated backbone -> :class:`~archzoo.segmentation.heads.DeepLabHead` (ASPP, 3x3 conv, 1x1
    classifier); in training an auxiliary FCN head on an earlier map.

    Args:
        num_classes: classes including the background (torchvision's: 21).
        backbone: a zoo classifier; ``output_stride``: 8 or 16 (``None``: undilated, 32).
        atrous_rates: the ASPP's 3x3 dilations (torchvision: 12, 24, 36; the paper: 6, 12, 18 at
            output stride 16); ``aspp_chs``: its width (256); ``separable``: depthwise-separable
            3x3 branches; ``dropout``: after the projection (0.5).
        norm_layer: the backbone's (``None``: its default); ``head_norm``: the heads' (batch norm).
        aux_logits, aux_index, aux_first_block: the auxiliary head, as
            :class:`~archzoo.segmentation.fcn_resnet.DilatedFCN`'s.
    """

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "resnet50",
                 output_stride: int | None = 8, norm_layer: str | None = None, aux_logits: bool = True,
                 aux_index: int = -2, aux_first_block: bool = False, head_norm: str | None = None,
                 atrous_rates: Sequence[int] = (12, 24, 36), aspp_chs: int = 256, separable: bool = False,
                 dropout: float = 0.5):
        def make_head(chs: int) -> DeepLabHead:
            return DeepLabHead(chs, num_classes, norm_layer=head_norm, rates=tuple(atrous_rates), out_chs=aspp_chs,
                               separable=separable, dropout=dropout)

        super().__init__(make_head, num_classes, in_chans, backbone, output_stride, norm_layer, aux_logits,
                         aux_index, aux_first_block, head_norm)


card = family_card(
    family="deeplab", arch="deeplabv3", task="segmentation", year=2017,
    paper="arXiv:1706.05587 Rethinking Atrous Convolution for Semantic Image Segmentation (Chen, Papandreou, "
          "Schroff, Adam)",
    tricks=("atrous_spatial_pyramid_pooling", "image_pooling", "atrous_convolution", "fully_convolutional",
            "auxiliary_classifier", "batch_norm", "relu", "dropout"),
    dataset=COCO_VOC, num_classes=21, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    input_size=(3, 520, 520), min_input_size=(3, 32, 32),
    heads=("head.classifier", "aux_heads.0.classifier"), cam_layer="head.conv",
)
_RESNET = ("residual_shortcut", "bottleneck")
_NOTES = ("torchvision's {0}: {1}, ASPP rates 12/24/36, auxiliary FCNHead on {2} in training (AuxLogits(logits, "
          "(aux,)); aux_logits=False builds without it). torchvision resizes to 520.")

register_variants(DeepLabV3, [
    card("deeplabv3_resnet50", reference="torchvision:deeplabv3_resnet50", extra_tricks=_RESNET,
         input_convs=("backbone.model.stem.conv.conv",), kwargs=dict(backbone="resnet50"),
         notes=_NOTES.format("deeplabv3_resnet50", "ResNet-50 at output stride 8", "layer3")),
    card("deeplabv3_resnet101", reference="torchvision:deeplabv3_resnet101", extra_tricks=_RESNET,
         input_convs=("backbone.model.stem.conv.conv",), kwargs=dict(backbone="resnet101"),
         notes=_NOTES.format("deeplabv3_resnet101", "ResNet-101 at output stride 8", "layer3")),
    card("deeplabv3_mobilenet_v3_large", reference="torchvision:deeplabv3_mobilenet_v3_large",
         extra_tricks=("inverted_residual", "squeeze_excitation", "hard_swish", "depthwise_separable_conv"),
         input_convs=("backbone.model.stem.conv",),
         kwargs=dict(backbone="mobilenet_v3_large", output_stride=16, aux_index=2, aux_first_block=True),
         notes=_NOTES.format("deeplabv3_mobilenet_v3_large", "MobileNetV3-Large at output stride 16 (dilated=True)",
                             "the first block of the stride-8 stage (stages.2.0, torchvision's features[4])")),
])
