"""SSD — Liu et al. 2015, "SSD: Single Shot MultiBox Detector", arXiv:1512.02325.

One network, one pass: a classification backbone, extra convolutional layers that keep halving
the map, and on each of six maps of decreasing resolution a 3x3 convolution predicting, for every
default box (:mod:`~archzoo.detection.default_boxes`), the class scores (a softmax over the classes
and the background) and four box offsets (the R-CNN delta code with SSD's variances 0.1/0.2,
:class:`~archzoo.detection.boxes.BoxCoder` weights 10, 10, 5, 5). Small objects are found on the
fine maps, large ones on the coarse (Figure 2).

Training (section 2.2): every ground-truth box takes its best default box, and every default box
with IoU >= 0.5 to some box is a positive too (:class:`~archzoo.detection.matchers.IoUMatcher`
with ``force_best``); the loss is smooth L1 on the positives' offsets plus softmax cross-entropy on
the positives and on the hardest negatives, at most 3 per positive (hard negative mining), both
divided by the number of positives.

SSD300 on VGG-16 (section 3): pool5 becomes 3x3 stride 1, fc6/fc7 become convolutions (fc6 a 3x3
with dilation 6, the "atrous" algorithm, fc7 a 1x1), conv4_3 is L2-normalised per position with a
learned per-channel scale starting at 20 (ParseNet), and pool3 rounds up so that conv4_3 is 38x38.
Maps: conv4_3 (38), fc7 (19), conv8_2 (10), conv9_2 (5), conv10_2 (3), conv11_2 (1). The VGG here
is the zoo's ``vgg16`` classifier's modules (:func:`archzoo.create_model` with ``features_only``);
``backbone=`` takes any zoo classifier instead (its stride-8 and stride-16 maps, no L2 norm).

The same class is SSDLite (:mod:`~archzoo.detection.ssdlite`) with other heads and extra layers.
Decoding follows torchvision's ``SSD.postprocess_detections``: softmax, per class the scores above
``score_thresh`` and at most ``topk_candidates`` of them, per-class NMS, ``detections_per_img``.

Labels: ``num_classes`` object classes, 0-based; the background has a logit of its own (logit 0,
class ``i`` is logit ``i + 1``). torchvision's COCO models have 91 logits whose logit 0 is the
background and whose labels are the logit indices; with ``num_classes=91`` (the COCO cards) our
model has that layout (``background_label0``), so converted weights give torchvision's labels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import box_iou, clip_boxes_to_image

from ..layers import ConvNormAct
from ..registry import family_card, register_variants
from .base import Detector
from .boxes import BoxCoder
from .default_boxes import DefaultBoxGenerator
from .matchers import IoUMatcher
from .postprocess import nms_detections, top_candidates
from .transform import DetectionTransform, ImageBatch

#: torchvision's COCO label space: 91 labels, label 0 the background ("__background__")
TORCHVISION_COCO_CLASSES = 91


def resolve_background(num_classes: int, background_label0: bool | None) -> bool:
    """Whether label 0 is the background logit (torchvision's layout): by default for 91 classes."""
    return num_classes == TORCHVISION_COCO_CLASSES if background_label0 is None else bool(background_label0)


class SSDHead(nn.Module):
    """Per map one class predictor (``anchors * logits`` channels) and one box predictor
    (``anchors * 4``), each made by ``block(in_chs, out_chs)``; outputs ``[B, sum(H W A), K]``."""

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_logits: int,
                 block: Callable[[int, int], nn.Module]):
        super().__init__()
        self.num_logits = num_logits
        self.classification = nn.ModuleList(block(c, a * num_logits) for c, a in zip(in_channels, num_anchors))
        self.regression = nn.ModuleList(block(c, a * 4) for c, a in zip(in_channels, num_anchors))

    @staticmethod
    def _flatten(outputs: list[torch.Tensor], k: int) -> torch.Tensor:
        # [B, A*K, H, W] -> [B, H*W*A, K]: position-major, box-minor (the default boxes' order)
        flat = []
        for y in outputs:
            b, _, h, w = y.shape
            flat.append(y.view(b, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, k))
        return torch.cat(flat, dim=1)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self._flatten([m(x) for m, x in zip(self.classification, maps)], self.num_logits)
        codes = self._flatten([m(x) for m, x in zip(self.regression, maps)], 4)
        return logits, codes


class L2Norm(nn.Module):
    """Each position's feature vector scaled to unit length, then by a learned per-channel
    ``weight`` (ParseNet, Liu et al. 2015, arXiv:1506.04579; SSD's conv4_3, initial scale 20)."""

    def __init__(self, channels: int, scale: float = 20.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x)


class SSDNeck(nn.Module):
    """From the backbone's maps to SSD's prediction maps: optionally L2-normalise the first map
    (``l2norm``), run ``fc`` on the last (SSD300's pool5/fc6/fc7) and then ``extra`` layers, each
    producing one more map from the previous."""

    def __init__(self, extra: Sequence[nn.Module], fc: nn.Module | None = None, l2norm: L2Norm | None = None):
        super().__init__()
        self.l2norm = l2norm
        self.fc = fc
        self.extra = nn.ModuleList(extra)

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        maps = list(maps)
        if self.l2norm is not None:
            maps[0] = self.l2norm(maps[0])
        if self.fc is not None:
            maps[-1] = self.fc(maps[-1])
        x = maps[-1]
        for layer in self.extra:
            x = layer(x)
            maps.append(x)
        return maps


class SSD(Detector):
    """Backbone -> neck (the prediction maps) -> :class:`SSDHead`; default boxes, matching, the
    hard-negative-mined loss and torchvision's decoding (see the module doc).

    Args:
        backbone: returns a list of maps; neck: turns them into the prediction maps.
        out_channels: the prediction maps' channels; head_block: ``block(in, out)`` of the head.
        default_boxes: a :class:`DefaultBoxGenerator` with one entry per prediction map.
        num_classes: object classes (without the background); background_label0: see the module doc.
        image_size: ``(h, w)`` every image is resized to; mean, std: the transform's normalisation.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: decoding.
        iou_thresh: matching; neg_to_pos: negatives kept per positive (3: positive fraction 1/4).
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, out_channels: Sequence[int],
                 head_block: Callable[[int, int], nn.Module], default_boxes: DefaultBoxGenerator, num_classes: int,
                 image_size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                 background_label0: bool = False, score_thresh: float = 0.01, nms_thresh: float = 0.45,
                 detections_per_img: int = 200, topk_candidates: int = 400, iou_thresh: float = 0.5,
                 neg_to_pos: float = 3.0):
        super().__init__()
        if len(out_channels) != len(default_boxes.aspect_ratios):
            raise ValueError(f"{len(out_channels)} prediction maps but default boxes for {len(default_boxes.aspect_ratios)}")
        self.num_classes = num_classes
        self.background_label0 = background_label0
        self.label_offset = 0 if background_label0 else 1  # logit of class i: i + offset; logit 0: background
        h, w = image_size
        self.transform = DetectionTransform(min(h, w), max(h, w), mean, std, size_divisible=1, fixed_size=(w, h))
        self.backbone, self.neck = backbone, neck
        self.default_boxes = default_boxes
        self.head = SSDHead(out_channels, default_boxes.num_anchors_per_location(), num_classes + self.label_offset,
                            head_block)
        self.box_coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.matcher = IoUMatcher(iou_thresh, force_best=True)
        self.neg_to_pos = neg_to_pos
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates

    def forward_batch(self, x: torch.Tensor):
        maps = self.neck(self.backbone(x))
        logits, codes = self.head(maps)
        boxes = self.default_boxes(x.shape[-2:], [m.shape[-2:] for m in maps], dtype=maps[0].dtype, device=x.device)
        return logits, codes, boxes

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        logits, codes, anchors = outputs
        if self.background_label0 and any(bool((t["labels"] == 0).any()) for t in targets):
            raise ValueError("targets: label 0 is the background in this model (torchvision's 91-class COCO layout); "
                             "build it with background_label0=False to train a class 0")
        return self.multibox_loss(logits, codes, [anchors] * len(targets), targets)

    def multibox_loss(self, logits: torch.Tensor, codes: torch.Tensor, anchors: list[torch.Tensor],
                      targets: list[dict], usable: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """SSD's MultiBox loss: anchors matched to an object regress its box (smooth L1) and learn its
        class; the rest are background, of which only the ``neg_to_pos`` x positives of highest loss
        per image count (hard negative mining). ``anchors``: each image's own; ``usable`` ``[B, A]``:
        the anchors that may be positive or negative at all (RefineDet's refinement drops the rest),
        ``None`` for all."""
        box_losses, cls_targets, num_pos = [], [], 0
        for i, (t, code, a) in enumerate(zip(targets, codes, anchors)):
            matches = self._match(t["boxes"], a)
            pos = torch.where((matches >= 0) if usable is None else (matches >= 0) & usable[i])[0]
            gt = matches[pos]
            num_pos += pos.numel()
            wanted = self.box_coder.encode(t["boxes"][gt], a[pos])
            box_losses.append(F.smooth_l1_loss(code[pos], wanted, reduction="sum"))
            target = torch.zeros(code.shape[0], dtype=torch.int64, device=code.device)
            target[pos] = t["labels"][gt] + self.label_offset
            cls_targets.append(target)
        cls_targets = torch.stack(cls_targets)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), cls_targets.reshape(-1),
                             reduction="none").view(cls_targets.shape)
        positive = cls_targets > 0
        excluded = positive if usable is None else positive | ~usable
        num_neg = self.neg_to_pos * positive.sum(1, keepdim=True)
        rank = ce.masked_fill(excluded, -float("inf")).argsort(1, descending=True).argsort(1)
        negative = rank < num_neg
        if usable is not None:  # fewer usable negatives than wanted: the rest are not filled with excluded ones
            negative &= ~excluded
        n = max(1, num_pos)
        return {"bbox_regression": torch.stack(box_losses).sum() / n,
                "classification": (ce[positive].sum() + ce[negative].sum()) / n}

    def _match(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        return self.matcher(box_iou(boxes, anchors))

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        logits, codes, anchors = outputs
        probs = F.softmax(logits, dim=-1)
        results = []
        for code, prob, size in zip(codes, probs, batch.image_sizes):
            boxes = clip_boxes_to_image(self.box_coder.decode(code, anchors), size)
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in range(self.num_classes):
                logit = label + self.label_offset
                if logit == 0:  # torchvision's layout: label 0 is the background
                    continue
                scores, where, _ = top_candidates(prob[:, logit:logit + 1], self.score_thresh, self.topk_candidates)
                kept_boxes.append(boxes[where])
                kept_scores.append(scores)
                kept_labels.append(torch.full_like(where, label))
            if not kept_boxes:  # a detector of the background alone
                kept_boxes, kept_scores, kept_labels = [boxes[:0]], [prob[:0, 0]], [torch.zeros(0, dtype=torch.int64)]
            results.append(nms_detections(torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels),
                                          self.nms_thresh, self.detections_per_img))
        return results


# --- SSD300 -----------------------------------------------------------------------------------

SSD300_STEPS = (8, 16, 32, 64, 100, 300)  # the Caffe tiling of SSD300, used at 300x300
SSD300_SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
SSD300_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
VGG_MEAN = (0.48235, 0.45882, 0.40784)  # Caffe's BGR means as RGB in 0..1; std 1/255 undoes the 0..1 scaling
VGG_STD = (1.0 / 255.0,) * 3


def _conv_relu(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1):
    return ConvNormAct(in_chs, out_chs, kernel_size, stride, padding=padding, dilation=dilation, norm_layer=None)


def ssd300_extra(in_chs: int) -> list[nn.Module]:
    """conv8_2 .. conv11_2: a 1x1 reduction then a 3x3, strided twice, then unpadded twice (Figure 2)."""
    layers = []
    for mid, out, stride, pad in ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0)):
        layers.append(nn.Sequential(_conv_relu(in_chs, mid, 1), _conv_relu(mid, out, 3, stride, pad)))
        in_chs = out
    return layers


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_size(image_size) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return size


def ssd300(num_classes: int = 91, in_chans: int = 3, backbone: str = "vgg16", image_size=300,
           norm_layer: str | None = None, background_label0: bool | None = None, **kwargs) -> SSD:
    """SSD300: ``backbone``'s stride-8 and stride-16 maps (VGG-16: conv4_3 L2-normalised, and fc7
    after the modified pool5/fc6/fc7), conv8_2 .. conv11_2, 3x3 heads. ``kwargs`` go to :class:`SSD`
    (thresholds); ``norm_layer`` to the backbone (e.g. ``"frozen_batchnorm"``) where it has norms."""
    from ..builder import create_model

    size = _check_size(image_size)
    opts = {"norm_layer": norm_layer} if norm_layer else {}
    is_vgg = backbone.startswith("vgg")
    if is_vgg:  # its fully-connected head (120M weights) would be built and dropped
        opts.update(num_classes=0, hidden=())
    body = create_model(backbone, features_only=True, out_strides=(8, 16), in_chans=in_chans, **opts)
    channels = body.feature_info.channels()
    if is_vgg:  # the paper's VGG: pool3 rounds up (38x38 conv4_3 at 300), pool5 3x3/1, atrous fc6, fc7
        pool3 = body.model.stages[3].pool
        pool3.ceil_mode = True
        fc = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), _conv_relu(channels[1], 1024, 3, padding=6, dilation=6),
                           _conv_relu(1024, 1024, 1))
        channels = [channels[0], 1024]
        neck = SSDNeck(ssd300_extra(1024), fc=fc, l2norm=L2Norm(channels[0]))
    else:
        neck = SSDNeck(ssd300_extra(channels[1]))
    _xavier(neck)
    out_channels = channels + [512, 256, 256, 256]
    steps = SSD300_STEPS if size == (300, 300) else None  # the Caffe steps only fit the 300x300 maps
    boxes = DefaultBoxGenerator(SSD300_RATIOS, scales=SSD300_SCALES, steps=steps)

    def head_block(c: int, out: int) -> nn.Module:
        conv = nn.Conv2d(c, out, 3, padding=1)
        _xavier(conv)
        return conv

    return SSD(body, neck, out_channels, head_block, boxes, num_classes, size, VGG_MEAN, VGG_STD,
               background_label0=resolve_background(num_classes, background_label0), **kwargs)


_HEADS = tuple(f"head.classification.{i}" for i in range(6))

card = family_card(
    family="ssd",
    year=2015,
    paper="arXiv:1512.02325 SSD: Single Shot MultiBox Detector (Liu et al.)",
    tricks=("multiscale_default_boxes", "anchor_boxes", "hard_negative_mining", "non_maximum_suppression",
            "stacked_3x3_convs", "relu", "pointwise_conv"),
    task="detection",
    dataset="COCO",
    num_classes=91,
    mean=VGG_MEAN,
    std=VGG_STD,
)

register_variants(ssd300, [
    card("ssd300_vgg16", reference="torchvision:ssd300_vgg16", input_size=(3, 300, 300), min_input_size=(3, 268, 268),
         heads=_HEADS, input_convs=("backbone.model.stages.0.conv1.conv",), kwargs=dict(backbone="vgg16"),
         notes="Images are resized to image_size (300x300; any (h, w) works, the smallest that keeps every map is "
               "268). The Caffe steps (8 ... 300) tile the default boxes only at 300x300; other sizes centre them "
               "on the maps' cells, as the paper's formula. 91 classes: torchvision's COCO labels, label 0 the "
               "background; any other num_classes counts object classes with a background logit of their own. "
               "Its conv4_3 L2 norm (ParseNet) and atrous fc6 are not in the trick vocabulary yet."),
])
