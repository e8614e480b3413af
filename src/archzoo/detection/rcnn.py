"""R-CNN -- Girshick, Donahue, Darrell & Malik, "Rich feature hierarchies for accurate object
detection and semantic segmentation", arXiv:1311.2524, CVPR 2014.

The first detector built on a deep classifier, and the start of the two-stage lineage (Fast,
Faster, Mask R-CNN). Per image:

1. ~2000 class-agnostic region proposals from selective search
   (:mod:`archzoo.detection.selective_search`);
2. each region is *warped*: its box is enlarged so that, at the CNN's input size, ``p = 16``
   pixels of image context surround it (what falls outside the image is the image mean, zero after
   normalisation), cropped and resized to the CNN's square input whatever its aspect ratio
   (section 2.1, appendix A), here by bilinear sampling (``torchvision.ops.roi_align``, adaptive
   samples per cell so large regions are averaged rather than aliased);
3. the whole CNN (AlexNet in the paper) runs on every warped region: **one forward per region**,
   ~2000 per image, which is what made R-CNN slow (13 s/image on a GPU, 53 s on a CPU, table in
   section 2.2) and what Fast R-CNN removed (arXiv:1504.08083: one forward per image, RoI pooling);
4. per region a score for each of ``K`` classes and the background, and class-specific box
   regression (appendix C, the delta encoding of :class:`~archzoo.detection.boxes.BoxCoder`);
5. greedy non-maximum suppression within each class (IoU 0.3, the released code's threshold).

Training follows the paper's fine-tuning (section 2.3): regions with IoU >= 0.5 with a box are
positives of its class, the rest background; each image contributes a mini-batch of 128 regions,
25% positive (the paper: 32 positives and 96 background per 128 across images).

What differs from the paper, deliberately: the classifier is the fine-tuning softmax over
``K + 1`` classes, *not* the per-class linear SVMs trained afterwards on fc7 features with
hard-negative mining (appendix B: the SVMs gained ~4 mAP on VOC 2007 over this softmax); and the
box regression is trained jointly with it (smooth-L1 on the true class's deltas) from the same
features, where the paper fits a ridge regressor on pool5 features separately. Both are Fast R-CNN's
multi-task loss, so R-CNN and Fast R-CNN here share their RoI heads
(:class:`~archzoo.detection.roi_heads.RoIHeads`) and differ exactly in how a region's features are
computed: the CNN on warped pixels (:class:`WarpedRegionFeatures`, R-CNN) or RoI pooling from one
shared map (Fast R-CNN). Any zoo classifier can be the CNN (``backbone=``; its pooled, pre-logits
features are the region's features: fc7, 4096-d, for AlexNet).

``forward_batch(x)`` is the network proper -- a batch of warped regions ``[N, C, S, S]`` in,
``(class logits, box deltas)`` out -- so the parameter and FLOP counts of this card are *per
region*.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.ops import roi_align

from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .faster_rcnn import make_transform
from .roi_heads import BoxPredictor, RoIHeads
from .selective_search import SelectiveSearchProposer
from .two_stage import TwoStageDetector


class ImageAsMap(nn.Module):
    """R-CNN has no shared feature map: the "map" its regions are cut from is the normalised image."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x]


def context_boxes(boxes: torch.Tensor, warp_size: int, context_padding: int) -> torch.Tensor:
    """Enlarge ``boxes`` about their centres so that, warped to ``warp_size``, the original box
    fills the middle ``warp_size - 2 * context_padding`` pixels (R-CNN's ``p = 16`` context)."""
    scale = warp_size / (warp_size - 2 * context_padding)
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    return torch.cat([centre - half, centre + half], dim=1)


def check_warping(warp_size: int, context_padding: int, region_batch: int) -> None:
    if not 0 <= 2 * context_padding < warp_size:
        raise ValueError(f"context_padding must be >= 0 and leave room for the region: 2 * {context_padding} "
                         f">= warp_size {warp_size}")
    if region_batch < 1:
        raise ValueError(f"region_batch must be >= 1, got {region_batch}")


class WarpedRegionFeatures(nn.Module):
    """R-CNN's region features: each box, with context, warped to ``warp_size`` squared and run
    through the whole ``cnn`` (a zoo classifier without its last layer), ``region_batch`` regions at
    a time (``1``: the literal per-region loop; larger batches change the speed, not the result).

    It has the call of the RoI heads' pooling, ``(maps, boxes, image_sizes) -> [N, D, 1, 1]``: in
    R-CNN, computing a region's features *is* running the CNN on its pixels (``maps[map_name]``,
    the normalised, padded images).
    """

    def __init__(self, cnn: nn.Module, features: int, warp_size: int = 224, context_padding: int = 16,
                 region_batch: int = 64, map_name: str = "image"):
        super().__init__()
        check_warping(warp_size, context_padding, region_batch)
        self.cnn, self.features = cnn, int(features)
        self.warp_size, self.context_padding = int(warp_size), int(context_padding)
        self.region_batch, self.map_name = int(region_batch), map_name

    def warp(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """``rois [n, 5]`` (image index, box with context) -> warped regions ``[n, C, S, S]``."""
        return roi_align(images, rois, self.warp_size, spatial_scale=1.0, sampling_ratio=0, aligned=True)

    def forward(self, maps: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_sizes=None) -> torch.Tensor:
        images = maps[self.map_name]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), context_boxes(b, self.warp_size, self.context_padding)], 1)
                          for i, b in enumerate(boxes)]).to(images.dtype)
        if rois.shape[0] == 0:
            return images.new_zeros((0, self.features, 1, 1))
        chunks = (rois,) if torch.jit.is_tracing() else rois.split(self.region_batch)  # export: a graph of all
        out = [self.cnn(self.warp(images, chunk)) for chunk in chunks]
        return torch.cat(out)[:, :, None, None]

    def extra_repr(self) -> str:
        return f"warp_size={self.warp_size}, context_padding={self.context_padding}, region_batch={self.region_batch}"


class RCNN(TwoStageDetector):
    """Selective search -> per region: warp -> CNN -> softmax over K + 1 and class-specific boxes -> NMS.

    Args:
        num_classes: object classes K (labels 0..K-1; the background is added).
        backbone: the zoo classifier run on every region (its pre-logits features are used);
            backbone_kwargs: its architecture arguments (e.g. narrower ``widths`` for tests);
            norm_layer: its normalisation where the family has the option.
        warp_size, context_padding, region_batch: see :class:`WarpedRegionFeatures` (224, 16, 64).
        min_size, max_size, image_size, mean, std: the image transform (shorter side 600, longer at
            most 1000; ``image_size``: a fixed size). Regions are cut from the resized image.
        proposals, search_mode, search_max_side, proposal_min_size: selective search's
            ``max_boxes``, ``mode``, ``max_side`` and ``min_size``.
        batch_size_per_image, positive_fraction, fg_iou_thresh, bg_iou_thresh: fine-tuning's
            regions per image (128, 25% positive, IoU >= 0.5 positive, below background).
        score_thresh, nms_thresh, detections_per_img: decoding (0.05, 0.3, 100).
    """

    def __init__(self, num_classes: int = 20, in_chans: int = 3, backbone: str = "alexnet",
                 backbone_kwargs: dict | None = None, norm_layer: str | None = None, warp_size: int = 224,
                 context_padding: int = 16, region_batch: int = 64, min_size: int = 600, max_size: int = 1000,
                 image_size: int | Sequence[int] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, proposals: int = 2000, search_mode: str = "fast",
                 search_max_side: int = 500, proposal_min_size: float = 4.0, batch_size_per_image: int = 128,
                 positive_fraction: float = 0.25, fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                 score_thresh: float = 0.05, nms_thresh: float = 0.3, detections_per_img: int = 100):
        from ..builder import create_model

        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (object classes, without background), got {num_classes}")
        check_warping(warp_size, context_padding, region_batch)
        transform = make_transform(in_chans, min_size, max_size, image_size, mean, std)
        options = {**(backbone_kwargs or {}), **({"norm_layer": norm_layer} if norm_layer else {})}
        cnn = create_model(backbone, num_classes=0, in_chans=in_chans, **options)
        width = getattr(cnn, "head_hidden_size", None) or cnn.num_features
        regions = WarpedRegionFeatures(cnn, width, warp_size, context_padding, region_batch)
        roi_heads = RoIHeads(regions, nn.Flatten(1), BoxPredictor(width, num_classes + 1), fg_iou_thresh=fg_iou_thresh,
                             bg_iou_thresh=bg_iou_thresh, batch_size_per_image=batch_size_per_image,
                             positive_fraction=positive_fraction, score_thresh=score_thresh, nms_thresh=nms_thresh,
                             detections_per_img=detections_per_img)
        proposer = SelectiveSearchProposer(transform.mean, transform.std, search_mode, search_max_side, proposals,
                                           proposal_min_size)
        super().__init__(num_classes, transform, ImageAsMap(), proposer, roi_heads, map_names=("image",))

    def forward_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network proper: warped regions ``[N, C, S, S]`` (normalised) -> ``(class logits [N, K + 1],
        box deltas [N, 4 (K + 1)])``."""
        heads = self.roi_heads
        return heads.box_predictor(heads.box_head(heads.box_pool.cnn(x)))


card = family_card(
    family="rcnn", year=2013, task="detection",
    paper="arXiv:1311.2524 Rich feature hierarchies for accurate object detection and semantic segmentation "
          "(Girshick, Donahue, Darrell, Malik)",
    tricks=("selective_search", "region_warping", "balanced_sampling", "non_maximum_suppression"),
    dataset="Pascal VOC", num_classes=20, mean=IMAGENET_MEAN, std=IMAGENET_STD,
    heads=("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"),
    input_size=(3, 224, 224),
)

register_variants(RCNN, [
    card("rcnn_alexnet", min_input_size=(3, 63, 63), input_convs=("roi_heads.box_pool.cnn.stages.0.conv1.conv",),
         notes="The paper's detector on the zoo's (torchvision's) AlexNet: 2000 selective-search regions ('fast' "
               "mode), each warped with 16 px context to 224x224 and run through the whole CNN (fc7 features, "
               "4096-d), a softmax over K + 1 classes instead of per-class SVMs, class-specific box regression "
               "trained jointly, per-class NMS at 0.3. Input size, parameters and FLOPs are per region; an image "
               "costs one CNN forward per proposal.",
         kwargs=dict(backbone="alexnet")),
])
