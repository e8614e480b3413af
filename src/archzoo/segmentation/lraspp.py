"""Lite R-ASPP: torchvision's ``lraspp_mobilenet_v3_large``.

Howard et al. ("Searching for MobileNetV3", arXiv:1905.02244, 2019, section 6.4 and Figure 10)
pair MobileNetV3 with a segmentation head far cheaper than DeepLab's ASPP: on the last map
(output stride 16: the last stage dilated instead of strided) one 1x1 conv branch (128 channels,
batch norm, ReLU) is weighted channel by channel by a squeeze-excitation-like branch (pooling,
1x1 conv, sigmoid), classified, upsampled to the stride-8 map and added to a 1x1 classifier of that
map; the sum is upsampled to the image. No auxiliary head.

torchvision's model, kept here number for number: the low-level map is the output of the *first*
block of MobileNetV3-Large's stride-8 stage (``features[4]``, our ``stages.2.0``), the gate pools
globally (the paper: a 49x49 window at stride (16, 20) on 1024x2048 images), and the backbone's
last stage keeps its full width (the paper halves it, ``reduced_tail``).
"""

from __future__ import annotations

import torch

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Segmenter
from .fcn_resnet import COCO_VOC, tapped_backbone
from .heads import LRASPPHead


class LRASPP(Segmenter):
    """A backbone's stride-8 (``low_index``) and last maps -> :class:`~archzoo.segmentation.heads.LRASPPHead`.

    Args:
        num_classes: classes including the background (torchvision's: 21).
        backbone: a zoo classifier; ``output_stride``: of its last map (16).
        low_index: the ``feature_info`` index of the low-level map (2: MobileNetV3-Large's stride 8);
            ``low_first_block``: taken after the first block of that stage (torchvision's
            ``features[4]``; see :func:`~archzoo.segmentation.fcn_resnet.tapped_backbone`).
        mid_chs: the head's width (128); ``norm_layer``: the backbone's (``None``: its default);
        ``head_norm``: the head's (batch norm).
    """

    def __init__(self, num_classes: int = 21, in_chans: int = 3, backbone: str = "mobilenet_v3_large",
                 output_stride: int | None = 16, norm_layer: str | None = None, low_index: int = 2,
                 low_first_block: bool = True, mid_chs: int = 128, head_norm: str | None = None):
        super().__init__()
        if low_index == -1:
            raise ValueError("low_index must name a feature map before the last (-1 is the high-level map)")
        self.num_classes = num_classes
        self.backbone = tapped_backbone(backbone, (low_index, -1), first_block=(low_index,) if low_first_block else (),
                                        in_chans=in_chans, output_stride=output_stride, norm_layer=norm_layer)
        low_chs, high_chs = self.backbone.feature_info.channels()
        self.head = LRASPPHead(low_chs, high_chs, num_classes, mid_chs, norm_layer=head_norm)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        return self.head(low, high)


card = family_card(
    family="lraspp", task="segmentation", year=2019,
    paper="arXiv:1905.02244 Searching for MobileNetV3 (Howard et al.)",
    tricks=("lite_reduced_aspp", "atrous_convolution", "fully_convolutional", "inverted_residual", "squeeze_excitation",
            "hard_swish", "depthwise_separable_conv", "batch_norm", "relu"),
    dataset=COCO_VOC, num_classes=21, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    input_size=(3, 520, 520), min_input_size=(3, 32, 32),
    heads=("head.high_classifier", "head.low_classifier"), cam_layer="head.branch",
)

register_variants(LRASPP, [
    card("lraspp_mobilenet_v3_large", reference="torchvision:lraspp_mobilenet_v3_large",
         input_convs=("backbone.model.stem.conv",), kwargs=dict(backbone="mobilenet_v3_large"),
         notes="torchvision's lraspp_mobilenet_v3_large: MobileNetV3-Large at output stride 16 (dilated=True), the "
               "low-level map from the first block of the stride-8 stage (stages.2.0, torchvision's features[4]); "
               "both final 1x1 convs are classifiers (heads). torchvision resizes to 520."),
])
