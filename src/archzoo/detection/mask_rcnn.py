"""Mask R-CNN (He, Gkioxari, Dollar, Girshick, "Mask R-CNN", arXiv:1703.06870, ICCV 2017).

Faster R-CNN (:mod:`~archzoo.detection.faster_rcnn`) with a third output per region: a binary
mask. Two changes make it work. RoIAlign replaces RoI pooling, whose rounding misaligns a region's
features by up to a stride -- harmless for boxes, ruinous for pixel masks. And the mask head
predicts one 28 x 28 mask per class with a per-pixel sigmoid, trained only on the region's true
class: classes do not compete for pixels (the box classifier already chose), which the paper
finds much better than a softmax over classes.

The mask branch (:mod:`~archzoo.detection.roi_heads`): RoIAlign 14 x 14 from the FPN level of
the region, four 3x3 convolutions (256, ReLU), a 2x2 stride-2 deconvolution and a 1x1 convolution
to one mask per class. Training: on the positive RoIs of the box branch's sample, the target is the
box's mask cut out at the RoI (RoIAlign, 28 x 28), the loss the mean binary cross-entropy. At test
time the mask of the predicted class of each detection is pasted into the image at its box (zero
border, bilinear resize), ``masks`` ``[n, 1, H, W]`` probabilities in the original image's pixels
(threshold at 0.5 for a binary mask).

``maskrcnn_resnet50_fpn`` is torchvision's number for number; ``backbone=`` takes any zoo
classifier (its stride 4-32 maps). Targets carry ``masks`` ``[k, H, W]`` besides boxes and labels.
"""

from __future__ import annotations

import inspect
from typing import Sequence

from torchvision.ops import MultiScaleRoIAlign

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .faster_rcnn import FasterRCNN
from .roi_heads import MaskHead, MaskPredictor, RoIPool


class MaskRCNN(FasterRCNN):
    """Faster R-CNN (all its arguments) with the mask branch: ``mask_size`` (the RoIAlign's 14),
    ``mask_layers`` (the FCN's widths), ``mask_dilation``."""

    def __init__(self, *args, mask_size: int = 14, mask_layers: Sequence[int] = (256, 256, 256, 256),
                 mask_dilation: int = 1, **kwargs):
        self._mask_options = (mask_size, tuple(mask_layers), mask_dilation)
        super().__init__(*args, **kwargs)
        del self._mask_options

    def mask_branch(self, channels: int, num_logits: int, pooled: Sequence[str], strides: Sequence[int],
                    fpn: bool) -> dict:
        size, layers, dilation = self._mask_options
        pool = MultiScaleRoIAlign(list(pooled), size, sampling_ratio=2) if fpn else \
            RoIPool(pooled[0], size, 1.0 / strides[0], "align")
        return {"mask_pool": pool, "mask_head": MaskHead(channels, layers, dilation),
                "mask_predictor": MaskPredictor(layers[-1], layers[-1], num_logits)}


def _signature() -> inspect.Signature:
    """Faster R-CNN's arguments and the mask branch's, so that argument checks and help see them all."""
    base = inspect.signature(FasterRCNN.__init__)
    own = [p for name, p in inspect.signature(MaskRCNN.__init__).parameters.items() if name.startswith("mask_")]
    return base.replace(parameters=[*base.parameters.values(), *own])


MaskRCNN.__init__.__signature__ = _signature()


card = family_card(family="mask_rcnn", year=2017, task="detection",
                   paper="arXiv:1703.06870 Mask R-CNN (He, Gkioxari, Dollar, Girshick)",
                   tricks=("region_proposal_network", "anchor_boxes", "feature_pyramid", "roi_align", "multi_task_loss",
                           "balanced_sampling", "mask_branch", "non_maximum_suppression"),
                   dataset="COCO-2017", num_classes=91, mean=IMAGENET_MEAN, std=IMAGENET_STD, instance_masks=True,
                   heads=("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred",
                          "roi_heads.mask_predictor.logits"),
                   input_convs=("backbone.model.stem.conv.conv",), min_input_size=(3, 64, 64))

register_variants(MaskRCNN, [
    card("maskrcnn_resnet50_fpn", reference="torchvision:maskrcnn_resnet50_fpn", input_size=(3, 800, 800),
         notes="torchvision's Mask R-CNN; masks [n, 1, H, W] are probabilities in the original image's pixels. "
               "num_classes=91 is torchvision's COCO layout (logit 0 the background, labels the logit indices); "
               "any other count: object classes 0..K-1 with a background logit of their own.",
         kwargs=dict(backbone="resnet50")),
])
