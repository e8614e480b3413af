"""Fast R-CNN -- Girshick, "Fast R-CNN", arXiv:1504.08083, ICCV 2015.

R-CNN (:mod:`archzoo.detection.rcnn`) ran the whole CNN on each of ~2000 warped proposals. Fast
R-CNN runs the convolutional layers **once per image** and cuts each proposal's features out of
the last shared map with *RoI pooling* (after SPP-net, arXiv:1406.4729): the region, projected onto
the stride-16 map, is divided into a fixed 7 x 7 grid and each cell max-pooled, so regions of any
size feed the same fully connected layers (fc6, fc7). Two sibling outputs follow (softmax over
``K + 1`` classes, 4 box deltas per class) and one multi-task loss trains them together, end to end
through the convolutions: 9x faster training and 213x faster testing than R-CNN with VGG-16, and
better mAP. The proposals are still selective search's (2000 per image), computed on the CPU and
now the bottleneck -- which Faster R-CNN's region proposal network removed (arXiv:1506.01497,
:mod:`archzoo.detection.faster_rcnn`).

The parts: the backbone's stride-16 map (VGG-16's conv5_3: the last max pool dropped), selective
search (:class:`~archzoo.detection.selective_search.SelectiveSearchProposer`), and the RoI heads
shared with Faster R-CNN (:class:`~archzoo.detection.roi_heads.RoIHeads`: RoI max pooling 7x7,
fc6/fc7, the two predictors, the multi-task loss, per-class NMS). Training draws 64 RoIs per image,
25% with IoU >= 0.5 with a box (section 2.3: 128 per mini-batch of 2 images), the ground-truth
boxes joined to the proposals. Differences from the paper: background RoIs are all those with IoU
< 0.5 (the paper: in [0.1, 0.5), a hard-negative heuristic) and the box loss is torchvision's
smooth-L1 with beta 1/9 (the paper: beta 1); test-time NMS is the paper's 0.3.
"""

from __future__ import annotations

from typing import Sequence

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .faster_rcnn import make_backbone, make_transform
from .roi_heads import BoxPredictor, RoIHeads, RoIPool, TwoFCHead
from .selective_search import SelectiveSearchProposer
from .two_stage import TwoStageDetector


class FastRCNN(TwoStageDetector):
    """Backbone (one map) + selective search -> RoI pooling -> fc6/fc7 -> class scores and boxes.

    Args:
        num_classes: object classes K (labels 0..K-1; the background is added).
        backbone, norm_layer: the zoo classifier and its normalisation; out_stride: the map used (16).
        min_size, max_size, image_size, mean, std: the transform (the paper: shorter side 600,
            longer at most 1000; ``image_size``: a fixed size).
        proposals, search_mode, search_max_side, proposal_min_size: selective search's
            ``max_boxes``, ``mode``, ``max_side``, ``min_size``.
        roi_pool: ``"pool"`` (RoI max pooling, the paper) or ``"align"``; roi_size: its grid (7).
        representation_size: fc6/fc7's width (VGG: 4096).
        batch_size_per_image, positive_fraction, fg_iou_thresh, bg_iou_thresh: the RoIs learnt from.
        score_thresh, nms_thresh, detections_per_img: decoding (0.05, 0.3, 100).
    """

    def __init__(self, num_classes: int = 20, in_chans: int = 3, backbone: str = "vgg16", norm_layer: str | None = None,
                 out_stride: int = 16, min_size: int = 600, max_size: int = 1000,
                 image_size: int | Sequence[int] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, proposals: int = 2000, search_mode: str = "fast",
                 search_max_side: int = 500, proposal_min_size: float = 4.0, roi_pool: str = "pool", roi_size: int = 7,
                 representation_size: int = 4096, batch_size_per_image: int = 64, positive_fraction: float = 0.25,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5, score_thresh: float = 0.05,
                 nms_thresh: float = 0.3, detections_per_img: int = 100):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        transform = make_transform(in_chans, min_size, max_size, image_size, mean, std)
        body, channels, strides = make_backbone(backbone, in_chans, norm_layer, (out_stride,))
        roi_heads = RoIHeads(RoIPool("0", roi_size, 1.0 / strides[0], roi_pool),
                             TwoFCHead(channels[0] * roi_size ** 2, representation_size),
                             BoxPredictor(representation_size, num_classes + 1), fg_iou_thresh=fg_iou_thresh,
                             bg_iou_thresh=bg_iou_thresh, batch_size_per_image=batch_size_per_image,
                             positive_fraction=positive_fraction, score_thresh=score_thresh, nms_thresh=nms_thresh,
                             detections_per_img=detections_per_img)
        proposer = SelectiveSearchProposer(transform.mean, transform.std, search_mode, search_max_side, proposals,
                                           proposal_min_size)
        super().__init__(num_classes, transform, body, proposer, roi_heads, map_names=("0",))


card = family_card(
    family="fast_rcnn", year=2015, task="detection",
    paper="arXiv:1504.08083 Fast R-CNN (Girshick)",
    tricks=("selective_search", "roi_pooling", "multi_task_loss", "balanced_sampling", "non_maximum_suppression"),
    dataset="Pascal VOC", num_classes=20, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    heads=("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
    input_size=(3, 600, 1000), min_input_size=(3, 64, 64),
)

register_variants(FastRCNN, [
    card("fast_rcnn_vgg16", input_convs=("backbone.model.stages.0.conv1.conv",),
         notes="The paper's detector: VGG-16 conv5_3 (stride 16), 2000 selective-search proposals ('fast' mode), "
               "7x7 RoI max pooling, fc6/fc7 4096, 64 RoIs per image (25% foreground), NMS 0.3. Parameters and "
               "FLOPs are the network's (backbone); selective search runs on the CPU beside it.",
         kwargs=dict(backbone="vgg16")),
    card("fast_rcnn_resnet50", input_convs=("backbone.model.stem.conv.conv",),
         notes="Fast R-CNN on ResNet-50's stride-16 map (C4, 1024 channels), RoI max pooling 7x7 and two 1024-wide "
               "FC layers: Faster R-CNN's no-FPN layout with selective search in place of the RPN.",
         kwargs=dict(backbone="resnet50", representation_size=1024)),
])
