"""The second stage of a two-stage detector: per-region heads on pooled features.

**Fast R-CNN** (Girshick, arXiv:1504.08083, ICCV 2015). R-CNN ran a whole CNN on every one of 2000
warped proposals; Fast R-CNN runs the network once per image and cuts each proposal's features out
of the last feature map with *RoI pooling*: the region is divided into a fixed ``7 x 7`` grid and
each cell max-pooled, so regions of any size feed the same fully connected layers (``fc6``,
``fc7``). Two sibling outputs follow: a softmax over ``K + 1`` classes (index 0: background) and,
per class, 4 box deltas (the R-CNN encoding, here with weights ``(10, 10, 5, 5)``). One
*multi-task loss* trains both: cross-entropy plus smooth-L1 on the deltas of the true class
(positives only). Each image contributes a mini-batch of RoIs, 25% with IoU >= 0.5 with a box
(foreground), the rest background (torchvision: 512 RoIs, IoU < 0.5 background; the ground-truth
boxes are added to the proposals). At test time each class's boxes above score 0.05 are kept,
NMS at 0.5 within each class, the 100 best overall.

**RoIAlign** (He, Gkioxari, Dollar, Girshick, "Mask R-CNN", arXiv:1703.06870, ICCV 2017): RoI
pooling rounds the region and its cells to the feature grid, misaligning features by up to a
stride; RoIAlign samples each cell bilinearly at exact positions (2 x 2 samples, averaged). With an
FPN (arXiv:1612.03144, eq. 1) a region of size ``w x h`` is pooled from level
``floor(4 + log2(sqrt(wh) / 224))`` (``torchvision.ops.MultiScaleRoIAlign``).

**The mask branch** (Mask R-CNN): a small FCN on 14 x 14 RoIAlign features -- four 3x3
convolutions (256, ReLU), a 2x2 stride-2 deconvolution and a 1x1 convolution -- predicts one
28 x 28 mask per class; the loss is the mean binary cross-entropy of the mask of the RoI's true
class only (masks do not compete between classes, the classifier picks the class). At test time
the mask of the predicted class is pasted into the image at its box (:func:`paste_masks`).

Labels: class ``i`` (0-based) is logit ``i + label_offset``, logit 0 the background. torchvision's
COCO models have 91 logits, logit 0 the background and the labels the logit indices: with
``label_offset=0`` (``background_label0`` of the detectors, the default for 91 classes, as SSD's)
the labels are torchvision's and label 0 is never predicted nor trained.

Number for number torchvision's ``RoIHeads`` (``TwoMLPHead``, ``FastRCNNPredictor``,
``MaskRCNNHeads``, ``MaskRCNNPredictor``, ``paste_masks_in_image``).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes, roi_align, roi_pool

from ..layers import ConvNormAct
from .boxes import BoxCoder
from .matchers import BACKGROUND, IGNORE, IoUMatcher
from .samplers import BalancedSampler

# --- pooling, the box head and the predictor -------------------------------------------------------------------


class RoIPool(nn.Module):
    """Pool regions from one feature map: ``kind="pool"`` (Fast R-CNN's RoI max pooling) or
    ``"align"`` (Mask R-CNN's RoIAlign with ``sampling_ratio`` samples per cell side).

    ``forward(maps, boxes, image_sizes)`` takes the map named ``map_name`` from ``maps`` and the
    per-image ``boxes`` in input pixels (``spatial_scale``: map size / input size, e.g. 1/16), and
    returns ``[sum n_i, C, output_size, output_size]``: the call of ``torchvision.ops.MultiScaleRoIAlign``."""

    def __init__(self, map_name: str, output_size: int, spatial_scale: float, kind: str = "align",
                 sampling_ratio: int = 2):
        super().__init__()
        if kind not in ("align", "pool"):
            raise ValueError(f"kind must be 'align' or 'pool', got {kind!r}")
        self.map_name, self.output_size, self.spatial_scale = map_name, int(output_size), float(spatial_scale)
        self.kind, self.sampling_ratio = kind, sampling_ratio

    def forward(self, maps: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_sizes=None) -> torch.Tensor:
        x = maps[self.map_name]
        boxes = [b.to(x.dtype) for b in boxes]
        if self.kind == "pool":
            return roi_pool(x, boxes, self.output_size, self.spatial_scale)
        return roi_align(x, boxes, self.output_size, self.spatial_scale, self.sampling_ratio)

    def extra_repr(self) -> str:
        return f"{self.map_name!r}, {self.kind}, output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class TwoFCHead(nn.Module):
    """Fast R-CNN's ``fc6`` and ``fc7`` (ReLU) on the flattened pooled features."""

    def __init__(self, in_features: int, representation_size: int = 1024):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.out_features = representation_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class BoxPredictor(nn.Module):
    """The two sibling outputs: ``cls_score`` (``num_logits`` = K + 1 logits, logit 0 the background)
    and ``bbox_pred`` (4 deltas per logit, background included), initialised as the Fast R-CNN paper
    says: N(0, 0.01) and N(0, 0.001), biases 0."""

    def __init__(self, in_features: int, num_logits: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_logits)
        self.bbox_pred = nn.Linear(in_features, num_logits * 4)
        for layer, std in ((self.cls_score, 0.01), (self.bbox_pred, 0.001)):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


# --- the mask branch ---------------------------------------------------------------------------------------------


class MaskHead(nn.Sequential):
    """Mask R-CNN's FCN: ``len(layers)`` 3x3 convolutions with ReLU (He-normal, fan-out)."""

    def __init__(self, in_channels: int, layers: Sequence[int] = (256, 256, 256, 256), dilation: int = 1):
        super().__init__(*(ConvNormAct(c_in, c_out, 3, padding=dilation, dilation=dilation, norm_layer=None)
                           for c_in, c_out in zip((in_channels, *layers[:-1]), layers)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.out_channels = layers[-1]


class MaskPredictor(nn.Module):
    """``upsample`` (2x2 deconvolution, stride 2, ReLU) and ``logits`` (1x1, one mask per logit of the
    box predictor, background included: ``num_logits``)."""

    def __init__(self, in_channels: int, dim_reduced: int, num_logits: int):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2)
        self.logits = nn.Conv2d(dim_reduced, num_logits, 1)
        for layer in (self.upsample, self.logits):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.upsample(x)))


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], padding: int = 1) -> torch.Tensor:
    """Masks ``[n, 1, M, M]`` (probabilities over each box) as ``[n, 1, H, W]`` images.

    Each mask gets a ``padding``-pixel zero border, its box is enlarged by the same factor
    ``(M + 2 padding) / M`` and rounded to whole pixels, the mask is resized bilinearly to the box
    and placed there (what falls outside the image is cut): torchvision's ``paste_masks_in_image``.
    """
    h, w = image_size
    if masks.shape[0] == 0:
        return masks.new_zeros((0, 1, h, w))
    m = masks.shape[-1]
    masks = F.pad(masks, (padding,) * 4)
    scale = float(m + 2 * padding) / m
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    boxes = torch.cat([centre - half, centre + half], dim=1).to(torch.int64)
    out = masks.new_zeros((masks.shape[0], 1, h, w))
    for mask, (x0, y0, x1, y1), target in zip(masks, boxes.tolist(), out):
        box_w, box_h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(mask[None], size=(box_h, box_w), mode="bilinear", align_corners=False)[0, 0]
        left, top, right, bottom = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
        if right > left and bottom > top:
            target[0, top:bottom, left:right] = resized[top - y0:bottom - y0, left - x0:right - x0]
    return out


# --- the heads ---------------------------------------------------------------------------------------------------


class RoIHeads(nn.Module):
    """Box (and optionally mask) heads on the proposals (see the module doc).

    Args:
        box_pool: ``(maps, boxes, image_sizes) -> [N, C, S, S]`` (``MultiScaleRoIAlign``, :class:`RoIPool`).
        box_head: ``[N, C, S, S] -> [N, D]`` (:class:`TwoFCHead`).
        box_predictor: ``[N, D] -> (class logits [N, K + 1], deltas [N, 4 (K + 1)])`` (:class:`BoxPredictor`).
        fg_iou_thresh, bg_iou_thresh: a proposal is foreground at IoU >= ``fg``, background below ``bg``.
        batch_size_per_image, positive_fraction: the RoIs drawn per image for the loss (512, 0.25).
        box_coder_weights: the delta encoding's weights (10, 10, 5, 5).
        score_thresh, nms_thresh, detections_per_img: decoding (0.05, 0.5, 100).
        label_offset: class ``i`` is logit ``i + label_offset`` (1; 0: torchvision's COCO layout).
        mask_pool, mask_head, mask_predictor: the mask branch (all three, or none).

    ``forward(maps, proposals, image_sizes, targets=None)`` returns ``(detections, losses)``:
    in training ``([], {loss_classifier, loss_box_reg[, loss_mask]})``; in eval one dict per image,
    ``boxes`` (resized image's pixels), ``scores``, ``labels`` and with masks ``masks``
    ``[n, 1, 28, 28]``, the probabilities of the predicted class over the box.
    """

    def __init__(self, box_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module, *,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, box_coder_weights=(10.0, 10.0, 5.0, 5.0),
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 label_offset: int = 1, mask_pool: nn.Module | None = None, mask_head: nn.Module | None = None,
                 mask_predictor: nn.Module | None = None):
        super().__init__()
        branch = (mask_pool, mask_head, mask_predictor)
        if any(p is None for p in branch) and any(p is not None for p in branch):
            raise ValueError("the mask branch needs mask_pool, mask_head and mask_predictor together")
        self.box_pool, self.box_head, self.box_predictor = box_pool, box_head, box_predictor
        self.mask_pool, self.mask_head, self.mask_predictor = branch
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = BoxCoder(box_coder_weights)
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        if label_offset not in (0, 1):
            raise ValueError(f"label_offset must be 1 (logit 0 the background) or 0 (label 0 the background), "
                             f"got {label_offset}")
        self.label_offset = label_offset

    @property
    def has_mask(self) -> bool:
        return self.mask_predictor is not None

    def forward(self, maps: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None) -> tuple[list[dict], dict[str, torch.Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("RoI heads in training mode need targets")
            proposals, labels, box_targets, matched = self.sample(proposals, targets)
        class_logits, deltas = self.box_predictor(self.box_head(self.box_pool(maps, proposals, image_sizes)))
        if self.training:
            losses = fast_rcnn_loss(class_logits, deltas, torch.cat(labels), torch.cat(box_targets))
            if self.has_mask:
                losses["loss_mask"] = self.mask_loss(maps, proposals, labels, matched, targets, image_sizes)
            return [], losses
        detections = self.postprocess(class_logits, deltas, proposals, image_sizes)
        if self.has_mask:
            boxes = [d["boxes"] for d in detections]
            probs = self.mask_logits(maps, boxes, image_sizes).sigmoid()
            classes = torch.cat([d["labels"] for d in detections]) + self.label_offset
            probs = probs[torch.arange(classes.shape[0], device=classes.device), classes][:, None]
            for d, p in zip(detections, probs.split([b.shape[0] for b in boxes])):
                d["masks"] = p
        return detections, {}

    @torch.no_grad()
    def sample(self, proposals: list[torch.Tensor], targets: list[dict]):
        """The RoIs each image learns from: proposals plus its boxes, matched and drawn. Returns per
        image the drawn RoIs, their logit indices (0: background), their box targets (zeros for
        background) and the index of their box."""
        if self.label_offset == 0 and any(bool((t["labels"] == 0).any()) for t in targets):
            raise ValueError("targets: label 0 is the background in this model (torchvision's 91-class COCO layout); "
                             "build it with background_label0=False to train a class 0")
        rois, labels, box_targets, matched = [], [], [], []
        for props, t in zip(proposals, targets):
            gt = t["boxes"].to(props.dtype)
            props = torch.cat([props, gt])
            match = self.matcher(box_iou(gt, props))  # no boxes: every RoI is background
            index = match.clamp(min=0)
            cls = t["labels"][index] + self.label_offset if len(gt) else torch.zeros_like(index)
            cls[match == BACKGROUND] = 0
            cls[match == IGNORE] = -1
            pos, neg = self.sampler(cls)
            keep = torch.where(pos | neg)[0]
            props, cls, index = props[keep], cls[keep], index[keep]
            target = torch.zeros_like(props)
            fg = cls > 0
            target[fg] = self.box_coder.encode(gt[index[fg]], props[fg])
            rois.append(props)
            labels.append(cls)
            box_targets.append(target)
            matched.append(index)
        return rois, labels, box_targets, matched

    def postprocess(self, class_logits: torch.Tensor, deltas: torch.Tensor, proposals: list[torch.Tensor],
                    image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Softmax scores and class-specific boxes, per image: background dropped, scores above
        ``score_thresh``, empty boxes dropped, NMS within each class, the best ``detections_per_img``."""
        num = [p.shape[0] for p in proposals]  # shapes, not len(): traceable for export
        n, k1 = class_logits.shape
        boxes = self.box_coder.decode(deltas.reshape(-1, 4), torch.cat(proposals).repeat_interleave(k1, dim=0))
        boxes, scores = boxes.reshape(n, k1, 4).split(num), F.softmax(class_logits, -1).split(num)
        out = []
        for img_boxes, img_scores, size in zip(boxes, scores, image_sizes):
            img_boxes = clip_boxes_to_image(img_boxes, size)[:, 1:].reshape(-1, 4)
            logits = torch.arange(1, k1, device=img_scores.device)  # the background (logit 0) is no detection
            labels = (logits - self.label_offset).expand(img_scores.shape[0], -1).reshape(-1)
            img_scores = img_scores[:, 1:].reshape(-1)
            keep = torch.where(img_scores > self.score_thresh)[0]
            keep = keep[remove_small_boxes(img_boxes[keep], min_size=1e-2)]
            img_boxes, img_scores, labels = img_boxes[keep], img_scores[keep], labels[keep]
            keep = batched_nms(img_boxes, img_scores, labels, self.nms_thresh)[:self.detections_per_img]
            out.append({"boxes": img_boxes[keep], "scores": img_scores[keep], "labels": labels[keep]})
        return out

    def mask_logits(self, maps, boxes: list[torch.Tensor], image_sizes) -> torch.Tensor:
        return self.mask_predictor(self.mask_head(self.mask_pool(maps, boxes, image_sizes)))

    def mask_loss(self, maps, rois, labels, matched, targets, image_sizes) -> torch.Tensor:
        """Binary cross-entropy of the true class's mask logits on the positive RoIs against the box's
        mask cut out at each RoI (RoIAlign of the mask, ``M x M``)."""
        positive = [torch.where(cls > 0)[0] for cls in labels]
        boxes = [r[p] for r, p in zip(rois, positive)]
        logits = self.mask_logits(maps, boxes, image_sizes)
        size = logits.shape[-1]
        mask_targets = []
        for t, b, p, index in zip(targets, boxes, positive, matched):
            if len(p):
                gt_masks = t["masks"][:, None].to(b.dtype)
                rois = torch.cat([index[p][:, None].to(b.dtype), b], dim=1)
                mask_targets.append(roi_align(gt_masks, rois, (size, size), 1.0)[:, 0])
        classes = torch.cat([cls[p] for cls, p in zip(labels, positive)])
        if classes.numel() == 0:
            return logits.sum() * 0
        chosen = logits[torch.arange(len(classes), device=classes.device), classes]
        return F.binary_cross_entropy_with_logits(chosen, torch.cat(mask_targets))


def fast_rcnn_loss(class_logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor,
                   box_targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fast R-CNN's multi-task loss: cross-entropy over the ``K + 1`` classes (mean over the drawn
    RoIs) and smooth-L1 (beta 1/9) of the true class's deltas of the foreground RoIs, summed and
    divided by the number of RoIs drawn."""
    fg = torch.where(labels > 0)[0]
    deltas = deltas.reshape(len(deltas), -1, 4)[fg, labels[fg]]
    box_loss = F.smooth_l1_loss(deltas, box_targets[fg], beta=1 / 9, reduction="sum") / max(labels.numel(), 1)
    return {"loss_classifier": F.cross_entropy(class_logits, labels), "loss_box_reg": box_loss}


__all__ = ["RoIHeads", "RoIPool", "TwoFCHead", "BoxPredictor", "MaskHead", "MaskPredictor", "paste_masks",
           "fast_rcnn_loss"]
