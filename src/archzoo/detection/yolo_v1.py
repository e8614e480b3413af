"""YOLO v1 — Redmon, Divvala, Girshick & Farhadi, "You Only Look Once: Unified, Real-Time Object
Detection", arXiv:1506.02640, 2015.

Detection as one regression: the image is divided into an ``S x S`` grid; the cell that holds an
object's centre is responsible for it. Each cell predicts ``B`` boxes ``(x, y, sqrt(w), sqrt(h))``
with a confidence each (``Pr(object) * IoU``) and one set of ``C`` class probabilities
``Pr(class | object)``: an ``S x S x (5B + C)`` tensor, computed by fully-connected layers over the
whole last feature map, so every prediction sees the whole image. ``x, y`` are offsets within the
cell, ``w, h`` fractions of the image (predicted as square roots, so that an error on a small box
costs more than the same error on a large one).

The loss is the paper's sum-squared error (eq. 3): for the *responsible* predictor of each object
(of its cell's ``B``, the one whose box has the highest IoU with it) ``lambda_coord = 5`` times the
errors of ``x, y, sqrt(w), sqrt(h)``, plus the error of its confidence against that IoU; for every
other predictor ``lambda_noobj = 0.5`` times its confidence squared; and, in cells holding an object,
the errors of the class probabilities. At test time the class-specific confidence is
``Pr(class | object) * confidence``, thresholded and followed by per-class non-maximum suppression.

Here the head sits on any zoo backbone (``backbone=``; the paper's 24-layer Darknet was pre-trained
on ImageNet, which this zoo has no weights for): extra 3x3 convolutions with leaky ReLU (the paper
adds four), an average pool to ``S x S`` (so any stride and input size gives the grid), then the
two fully-connected layers (the paper's 4096-wide first layer, dropout 0.5, linear outputs). The
last layer is stored as two blocks of rows, ``head.boxes`` (the ``5B`` box numbers of every cell)
and ``head.classes`` (the ``C`` probabilities of every cell, weights ``[C, S*S, F]``): the same
function as one ``F -> S*S*(5B + C)`` layer, with the class-count dependence in one place.
Images are resized to ``image_size`` squared (448 in the paper), without keeping the aspect ratio.
A cell holding several objects' centres learns the largest of them (each cell has one set of
class probabilities).
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import box_iou

from ..layers import ConvNormAct
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from .base import Detector
from .postprocess import nms_detections, top_candidates
from .transform import DetectionTransform, ImageBatch


class GridClassifier(nn.Module):
    """A fully-connected layer giving ``C`` values for each of ``cells`` cells: ``[N, F] -> [N, cells, C]``,
    with weights ``[C, cells, F]`` (one block of rows of YOLO's last layer)."""

    def __init__(self, in_features: int, cells: int, num_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, cells, in_features))
        self.bias = nn.Parameter(torch.zeros(num_classes, cells))
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nf,csf->nsc", x, self.weight) + self.bias.T


class YOLOv1Head(nn.Module):
    """Extra convs -> average pool to ``S x S`` -> flatten -> FC -> leaky ReLU -> dropout -> box rows and class rows."""

    def __init__(self, in_chs: int, num_classes: int, grid: int = 7, boxes: int = 2, conv_width: int = 1024,
                 extra_convs: int = 4, fc_width: int = 4096, drop_rate: float = 0.5):
        super().__init__()
        conv = partial(ConvNormAct, norm_layer=None, act_layer=partial(nn.LeakyReLU, 0.1))
        self.convs = nn.Sequential(*[conv(in_chs if i == 0 else conv_width, conv_width, 3) for i in range(extra_convs)])
        width = conv_width if extra_convs else in_chs
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.fc = nn.Linear(grid * grid * width, fc_width)
        self.act = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(drop_rate)
        self.boxes = nn.Linear(fc_width, grid * grid * boxes * 5)
        self.classes = GridClassifier(fc_width, grid * grid, num_classes)
        self.grid, self.num_boxes = grid, boxes
        nn.init.normal_(self.boxes.weight, std=0.01)
        nn.init.zeros_(self.boxes.bias)

    def pool_to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """Average-pool the map to ``S x S``. While traced for export, a map that is a whole multiple of
        the grid (448 px -> 14x14 at stride 32) is pooled with a fixed window, which ONNX expresses;
        its adaptive pooling, the same numbers, needs sizes the exporter cannot see."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if torch.jit.is_tracing() and h % self.grid == 0 and w % self.grid == 0:
            return F.avg_pool2d(x, (h // self.grid, w // self.grid))
        return self.pool(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes ``[N, S*S, B, 5]`` (x, y, sqrt w, sqrt h, confidence) and class probabilities ``[N, S*S, C]``."""
        x = self.drop(self.act(self.fc(self.pool_to_grid(self.convs(x)).flatten(1))))
        return self.boxes(x).view(x.shape[0], self.grid * self.grid, self.num_boxes, 5), self.classes(x)


class YOLOv1(Detector):
    """Backbone (its deepest map) -> :class:`YOLOv1Head` -> the paper's loss / decoding.

    Args:
        backbone: any zoo classifier; norm_layer: passed to it when given.
        grid (S), boxes (B): the grid and the boxes per cell.
        conv_width, extra_convs, fc_width, drop_rate: the head (paper: 1024, 4, 4096, 0.5).
        image_size: images are resized to this square (paper: 448).
        lambda_coord, lambda_noobj: the loss weights (paper: 5, 0.5).
        score_thresh, nms_thresh, detections_per_img: decoding.
    """

    def __init__(self, num_classes: int = 20, in_chans: int = 3, backbone: str = "resnet18", norm_layer: str | None = None,
                 grid: int = 7, boxes: int = 2, conv_width: int = 1024, extra_convs: int = 4, fc_width: int = 4096,
                 drop_rate: float = 0.5, image_size: int = 448, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 lambda_coord: float = 5.0, lambda_noobj: float = 0.5, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100):
        super().__init__()
        from ..builder import create_model

        self.num_classes, self.grid, self.num_boxes = num_classes, grid, boxes
        self.transform = DetectionTransform(image_size, image_size, mean, std, size_divisible=1,
                                            fixed_size=(image_size, image_size))
        options = {"norm_layer": norm_layer} if norm_layer else {}
        self.backbone = create_model(backbone, features_only=True, out_indices=(-1,), in_chans=in_chans, **options)
        self.head = YOLOv1Head(self.backbone.feature_info.channels()[-1], num_classes, grid, boxes, conv_width,
                               extra_convs, fc_width, drop_rate)
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    def forward_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.backbone(x)[-1])

    def _decode(self, pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Boxes ``[..., S*S, B, 4]`` xyxy in pixels of an image of ``size`` from ``pred [..., S*S, B, >=4]``."""
        s, (h, w) = self.grid, size
        cells = torch.arange(s * s, device=pred.device)
        col, row = (cells % s).to(pred.dtype)[:, None], torch.div(cells, s, rounding_mode="floor").to(pred.dtype)[:, None]
        cx, cy = (col + pred[..., 0]) / s * w, (row + pred[..., 1]) / s * h
        bw, bh = pred[..., 2].square() * w, pred[..., 3].square() * h
        return torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), -1)

    def loss(self, outputs, batch: ImageBatch, targets: list[dict]) -> dict[str, torch.Tensor]:
        pred, probs = outputs
        s, n = self.grid, pred.shape[0]
        zero = pred.new_zeros(())
        coord, obj, noobj, cls = zero, zero, zero, zero
        for i, t in enumerate(targets):
            h, w = batch.image_sizes[i]
            conf = pred[i, ..., 4]                                        # [S*S, B]
            responsible = torch.zeros_like(conf, dtype=torch.bool)
            gt = t["boxes"].to(pred.dtype)
            if gt.shape[0]:
                cx, cy = (gt[:, 0] + gt[:, 2]) / 2, (gt[:, 1] + gt[:, 3]) / 2
                col = (cx / w * s).long().clamp(0, s - 1)
                row = (cy / h * s).long().clamp(0, s - 1)
                cell = row * s + col
                # one object per cell: the largest (assigned last, so it wins)
                order = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])).argsort()
                owner = torch.full((s * s,), -1, dtype=torch.long, device=gt.device)
                owner[cell[order]] = order
                cells = (owner >= 0).nonzero().squeeze(1)
                k = owner[cells]                                          # the object of each such cell
                boxes = self._decode(pred[i].detach(), (h, w))[cells]    # [m, B, 4]
                iou = torch.stack([box_iou(boxes[j], gt[k[j]][None])[:, 0] for j in range(len(k))])  # [m, B]
                best = iou.argmax(1)
                responsible[cells, best] = True
                p = pred[i, cells, best]                                  # [m, 5]
                target = torch.stack((cx[k] / w * s - col[k], cy[k] / h * s - row[k],
                                      ((gt[k, 2] - gt[k, 0]) / w).sqrt(), ((gt[k, 3] - gt[k, 1]) / h).sqrt()), 1)
                coord = coord + self.lambda_coord * (p[:, :4] - target).square().sum()
                obj = obj + (p[:, 4] - iou[torch.arange(len(k)), best]).square().sum()
                onehot = torch.zeros_like(probs[i, cells])
                onehot[torch.arange(len(k)), t["labels"][k]] = 1.0
                cls = cls + (probs[i, cells] - onehot).square().sum()
            noobj = noobj + self.lambda_noobj * conf[~responsible].square().sum()
        return {"coord": coord / n, "obj": obj / n, "noobj": noobj / n, "cls": cls / n}

    def detect(self, outputs, batch: ImageBatch) -> list[dict[str, torch.Tensor]]:
        pred, probs = outputs
        results = []
        for i, size in enumerate(batch.image_sizes):
            h, w = size
            boxes = self._decode(pred[i], size).reshape(-1, 4)                     # [S*S*B, 4]
            scores = (pred[i, ..., 4:5] * probs[i][:, None, :]).reshape(-1, self.num_classes)  # Pr(class) * conf
            sc, loc, labels = top_candidates(scores, self.score_thresh, scores.numel())
            b = boxes[loc]
            b = torch.stack((b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)), 1)
            results.append(nms_detections(b, sc, labels, self.nms_thresh, self.detections_per_img))
        return results


card = family_card(
    family="yolo_v1",
    year=2015,
    paper="arXiv:1506.02640 You Only Look Once: Unified, Real-Time Object Detection (Redmon et al.)",
    tricks=("grid_detection", "leaky_relu", "dropout", "non_maximum_suppression"),
    task="detection",
    dataset="Pascal VOC",
    num_classes=20,
    input_size=(3, 448, 448),
    min_input_size=(3, 64, 64),
    heads=("head.classes",),
)

register_variants(YOLOv1, [
    card("yolov1_resnet18", input_convs=("backbone.model.stem.conv.conv",),
         notes="The paper's head (4 extra 3x3 convs, 7x7 grid, FC 4096, 2 boxes per cell) on ResNet-18 instead of "
               "the 24-layer Darknet; an average pool makes the 14x14 map at 448 a 7x7 grid.",
         kwargs=dict(backbone="resnet18", grid=7, boxes=2)),
])
