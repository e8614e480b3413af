"""DPM -- Felzenszwalb, Girshick, McAllester & Ramanan, "Object Detection with Discriminatively
Trained Part Based Models", IEEE TPAMI 32(9), 2010 (the deformable part model; PASCAL VOC's best
detector before R-CNN). Not a neural network: HOG features, linear filters, a latent SVM.

An object is a **root filter** (a HOG template of its whole appearance) plus ``P`` **part
filters** at twice the root's resolution, each with an anchor (where it sits relative to the
root) and a quadratic **deformation cost** ``d . (dx, dy, dx^2, dy^2)`` for moving away from it.
The score of a root placed at position ``p`` of pyramid level ``l`` (section 3)::

    score(p, l) = R_l(p) + sum_i max_{dp} [ P_{i, l - interval}(2p + a_i + dp) - d_i . phi(dp) ] + b

and the inner maxima are, for every ``p`` at once, generalized distance transforms of the parts'
response maps (:mod:`.dpm_features`). A class has ``M`` **components** (roots of other aspect
ratios, ``root_sizes``); the best component wins. Detections are the root windows scoring above
the threshold, one box per window, greedy per-class NMS (``torchvision.ops.batched_nms``).

Training (section 5, :mod:`.dpm_train`): roots from positives at their best-fitting pyramid
placement vs. random negatives (a linear SVM), parts initialised on the root's highest-energy
regions, then rounds of the **latent SVM**: each positive takes its best latent placement
(component, scale, position with IoU >= 0.7, part positions) under the current model, hard
negatives are mined by running the detector on the training images, and a linear SVM
(scikit-learn's LinearSVC, hinge loss) is refit on the cache of feature vectors. The SVM
scores are mapped to 0..1 by a logistic fit per class (Platt), so thresholds read like the CNN
detectors'.

What differs from the paper, deliberately: 36-d Dalal-Triggs HOG from scikit-image instead of
the paper's 31-d PCA-analysed features; filter sizes are architecture arguments (``root_sizes``,
``part_size``), not chosen from the data, so a checkpoint rebuilds with ``create_model``; no
mirrored components, no bounding-box regression from part positions and no context rescoring.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
from torchvision.ops import batched_nms

from ..registry import family_card, register_variants
from ..validate import UserError
from .base import Detector, as_image_list
from .dpm_features import CELL, HOG_DIM, Pyramid, correlate, distance_transform_2d, feature_pyramid, pad_cells, \
    pyramid_scales

BIAS_FEATURE = 10.0  # the bias enters the feature vector at this scale, so the SVM barely regularises it


class DPMFilters(nn.Module):
    """The learnt model, one row per (class, component): ``root [N, Hr, Wr, 36]`` (zero outside
    the component's own root size), ``parts [N, P, ph, pw, 36]``, ``anchors [N, P, 2]`` (y, x in
    part-level cells from the root's corner), ``deformation [N, P, 4]`` (d_x, d_y, d_xx, d_yy),
    ``bias [N]`` and ``calibration [N, 2]`` (the logistic map of the SVM score to 0..1)."""

    def __init__(self, rows: int, root_hw: tuple[int, int], num_parts: int, part_hw: tuple[int, int]):
        super().__init__()

        def fixed(*shape, fill=0.0):
            return nn.Parameter(torch.full(shape, float(fill)), requires_grad=False)

        self.root = fixed(rows, *root_hw, HOG_DIM)
        self.parts = fixed(rows, num_parts, *part_hw, HOG_DIM)
        self.anchors = fixed(rows, num_parts, 2)
        self.deformation = fixed(rows, num_parts, 4)
        self.bias = fixed(rows)
        self.calibration = fixed(rows, 2)
        with torch.no_grad():
            self.deformation[..., 2:] = 0.1  # the paper's initial cost (0, 0, .1, .1)
            self.calibration[:, 0] = 1.0


class LevelScores:
    """Scores of every root position at one root level, and where each part went."""

    def __init__(self, level: int, scale: float, scores: np.ndarray, part_y: np.ndarray, part_x: np.ndarray,
                 anchors: np.ndarray):
        self.level, self.scale, self.scores = level, scale, scores  # scores [n, H, W]
        self._y, self._x, self._anchors = part_y, part_x, anchors  # [n, P, Hf, Wf], anchors [n, P, 2]

    def placement(self, row: int, y: int, x: int) -> np.ndarray:
        """``[P, 2]``: the part-level cells (padded map) where row ``row``'s parts sit for the root at ``(y, x)``."""
        ay, ax = 2 * y + self._anchors[row, :, 0], 2 * x + self._anchors[row, :, 1]
        idx = np.arange(len(ay))
        return np.stack([self._y[row, idx, ay, ax], self._x[row, idx, ay, ax]], 1)


class DPM(Detector):
    """Deformable part model on a HOG pyramid (see the module doc).

    Args:
        num_classes: object classes (labels 0..K-1).
        in_chans: image channels (HOG takes the strongest gradient over colour channels).
        root_sizes: per component, the root filter's ``(height, width)`` in 8-px cells.
        num_parts, part_size: parts per component and their ``(height, width)`` in cells of the
            part level (twice the root's resolution): the paper's 6 parts.
        interval: pyramid levels per octave (the paper: 10).
        max_scale: the largest upsampling of the image for a root (the parts see twice that);
            objects smaller than the root at this scale are not found.
        score_thresh, nms_thresh, detections_per_img: decoding (calibrated score >= 0,
            per-class NMS at IoU 0.5, at most 100).
        image_size: the side the engine resizes images to; the model itself takes any size.
    """

    # profile.count_gflops: no multiply-adds to count in a tensor graph (HOG and the distance transform run in NumPy)
    tensor_graph = False

    def __init__(self, num_classes: int = 20, in_chans: int = 3, root_sizes: Sequence[Sequence[int]] = ((5, 5),),
                 num_parts: int = 6, part_size: Sequence[int] = (3, 3), interval: int = 5, max_scale: float = 4.0,
                 score_thresh: float = 0.0, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 image_size: int | None = None):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        sizes = [tuple(int(v) for v in s) for s in root_sizes]
        if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
            raise ValueError(f"root_sizes must list (height, width) in cells per component, got {root_sizes!r}")
        part_size = tuple(int(v) for v in part_size)
        if len(part_size) != 2 or min(part_size) < 1 or num_parts < 0 or interval < 1 or not max_scale > 0:
            raise ValueError(f"bad DPM arguments: part_size {part_size}, num_parts {num_parts}, interval {interval}, "
                             f"max_scale {max_scale}")
        for h, w in sizes:
            if num_parts and (part_size[0] > 2 * h or part_size[1] > 2 * w):
                raise ValueError(f"part_size {part_size} does not fit in a root of {h}x{w} cells at twice its resolution")
        self.num_classes, self.in_chans = int(num_classes), int(in_chans)
        self.root_sizes, self.num_parts, self.part_size = sizes, int(num_parts), part_size
        self.interval, self.max_scale = int(interval), float(max_scale)
        self.score_thresh, self.nms_thresh, self.detections_per_img = float(score_thresh), float(nms_thresh), int(detections_per_img)
        self.image_size = image_size
        hmax, wmax = max(s[0] for s in sizes), max(s[1] for s in sizes)
        self.pad = (max(hmax // 2, 1), max(wmax // 2, 1))
        self.filters = DPMFilters(self.num_classes * len(sizes), (hmax, wmax), self.num_parts, part_size)
        # the finest root level's scale, set by fit from the smallest training object
        self.register_buffer("top_scale", torch.tensor([1.0]))

    # --- layout ---------------------------------------------------------------------------------
    @property
    def num_components(self) -> int:
        return len(self.root_sizes)

    def rows_of(self, label: int) -> list[int]:
        """The filter rows of class ``label``'s components."""
        m = self.num_components
        return list(range(label * m, label * m + m))

    def component_size(self, row: int) -> tuple[int, int]:
        return self.root_sizes[row % self.num_components]

    # --- the pyramid and its scores ------------------------------------------------------------
    def pyramid(self, image: torch.Tensor) -> Pyramid:
        """HOG maps from twice the finest root scale down to where the smallest root still fits."""
        low = min(min(s) for s in self.root_sizes)
        top = 2 * min(float(self.top_scale[0]), self.max_scale)
        scales = pyramid_scales(tuple(image.shape[-2:]), top, self.interval, max(1, low - 2 * min(self.pad)))
        return feature_pyramid(image, scales)

    def score_pyramid(self, pyr: Pyramid, rows: Sequence[int] | None = None) -> list[LevelScores]:
        """For each root level (one with a part level ``interval`` above it): the score of every root
        position for filter ``rows`` (default all), parts placed by the distance transform."""
        f = self.filters
        rows = list(range(f.root.shape[0])) if rows is None else list(rows)
        idx = torch.tensor(rows, dtype=torch.long)
        roots, parts = f.root[idx].float(), f.parts[idx].float()
        anchors = f.anchors[idx].round().long().numpy()
        deformation = f.deformation[idx].double().numpy().reshape(-1, 4)
        bias = f.bias[idx].double().numpy()
        n, P = len(rows), self.num_parts
        (py, px), out = self.pad, []
        for level in range(self.interval, len(pyr)):
            root_map = correlate(pad_cells(pyr.features[level], py, px), roots).double().numpy()
            if root_map.size == 0:
                continue
            H, W = root_map.shape[1:]
            total = root_map + bias[:, None, None]
            part_y = part_x = np.zeros((n, P, 1, 1), np.int64)
            if P:
                fine = pad_cells(pyr.features[level - self.interval], 2 * py, 2 * px)
                response = correlate(fine, parts.reshape(n * P, *parts.shape[2:])).double().numpy()
                Hf, Wf = response.shape[1:]
                value, part_y, part_x = distance_transform_2d(response, deformation) if response.size else (
                    np.full(response.shape, -np.inf), np.zeros(response.shape, np.int64), np.zeros(response.shape, np.int64))
                value, part_y, part_x = (a.reshape(n, P, Hf, Wf) for a in (value, part_y, part_x))
                ay = 2 * np.arange(H)[None, None, :] + anchors[:, :, 0, None]  # [n, P, H]
                ax = 2 * np.arange(W)[None, None, :] + anchors[:, :, 1, None]  # [n, P, W]
                ok = (ay[..., :, None] < Hf) & (ax[..., None, :] < Wf)
                gathered = value[np.arange(n)[:, None, None, None], np.arange(P)[None, :, None, None],
                                 np.minimum(ay, Hf - 1)[..., :, None], np.minimum(ax, Wf - 1)[..., None, :]]
                total = total + np.where(ok, gathered, -np.inf).sum(1)
            out.append(LevelScores(level, pyr.scales[level], total, part_y, part_x, anchors))
        return out

    def window_boxes(self, row: int, scale: float, H: int, W: int) -> np.ndarray:
        """``[H, W, 4]`` xyxy boxes (image pixels) of row ``row``'s root at every position of a level."""
        h, w = self.component_size(row)
        py, px = self.pad
        y1 = (CELL * (np.arange(H) - py) + CELL / 2) / scale
        x1 = (CELL * (np.arange(W) - px) + CELL / 2) / scale
        yy, xx = np.meshgrid(y1, x1, indexing="ij")
        return np.stack([xx, yy, xx + CELL * w / scale, yy + CELL * h / scale], -1)

    # --- detection ------------------------------------------------------------------------------
    def calibrated(self, raw: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        a, b = self.filters.calibration[rows].double().unbind(1)
        return torch.sigmoid(a * raw + b)

    @torch.no_grad()
    def detect_image(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{boxes [n, 4], scores [n], labels [n]}`` for one ``[C, H, W]`` image in 0..1, in its pixels."""
        h, w = image.shape[-2:]
        boxes, raw, rows = [], [], []
        for ls in self.score_pyramid(self.pyramid(image)):
            n, H, W = ls.scores.shape
            for r in range(n):
                keep = np.flatnonzero(np.isfinite(ls.scores[r]).ravel())
                if keep.size > 2000:
                    keep = keep[np.argsort(-ls.scores[r].ravel()[keep], kind="stable")[:2000]]
                boxes.append(self.window_boxes(r, ls.scale, H, W).reshape(-1, 4)[keep])
                raw.append(ls.scores[r].ravel()[keep])
                rows.append(np.full(keep.size, r))
        if not boxes:
            return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
        rows_t = torch.from_numpy(np.concatenate(rows)).long()
        raw_t = torch.from_numpy(np.concatenate(raw))
        scores = self.calibrated(raw_t, rows_t).float()
        boxes_t = torch.from_numpy(np.concatenate(boxes)).float()
        boxes_t = torch.stack([boxes_t[:, 0].clamp(0, w), boxes_t[:, 1].clamp(0, h), boxes_t[:, 2].clamp(0, w),
                               boxes_t[:, 3].clamp(0, h)], 1)
        labels = rows_t // self.num_components
        keep = (scores >= self.score_thresh) & (boxes_t[:, 2] > boxes_t[:, 0] + 1) & (boxes_t[:, 3] > boxes_t[:, 1] + 1)
        boxes_t, scores, labels, raw_t = boxes_t[keep], scores[keep], labels[keep], raw_t[keep]
        # NMS and the cut to detections_per_img rank by the SVM margin, which is comparable across classes
        # (each class's calibration may saturate near 1 and would crowd the others out of the cut)
        keep = batched_nms(boxes_t, raw_t.float(), labels, self.nms_thresh)[: self.detections_per_img]
        return {"boxes": boxes_t[keep], "scores": scores[keep], "labels": labels[keep]}

    def forward(self, images, targets: list[dict] | None = None):
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            self.forward_batch(None)
        if self.training:
            raise UserError(f"{self._name()} is not trained by gradients: fit it with model.fit(images, targets) "
                            "(archzoo train does), then use it in eval mode")
        return [self.detect_image(img) for img in as_image_list(images)]

    @property
    def transform(self):
        """No tensor-to-tensor transform: HOG pyramids are built per image outside torch."""
        self.forward_batch(None)

    def forward_batch(self, x):
        raise UserError(f"{self._name()} cannot be exported: not a neural network (its HOG features are computed by "
                        "scikit-image outside the graph)")

    def _name(self) -> str:
        return getattr(getattr(self, "card", None), "name", "the DPM")

    # --- fitting --------------------------------------------------------------------------------
    def fit(self, images: list[torch.Tensor], targets: list[dict], **options) -> list[dict]:
        """Train by latent SVM (see :func:`archzoo.detection.dpm_train.fit_dpm` for ``options``);
        returns one record per round."""
        from .dpm_train import fit_dpm

        return fit_dpm(self, images, targets, **options)

    def extra_repr(self) -> str:
        return (f"root_sizes={self.root_sizes}, num_parts={self.num_parts}, part_size={self.part_size}, "
                f"interval={self.interval}, max_scale={self.max_scale}")


card = family_card(
    family="dpm", year=2010, task="detection",
    paper="Object Detection with Discriminatively Trained Part Based Models (Felzenszwalb, Girshick, McAllester, "
          "Ramanan), IEEE TPAMI 2010",
    tricks=("hog_features", "deformable_parts", "distance_transform", "latent_svm", "hard_negative_mining",
            "non_maximum_suppression"),
    dataset="Pascal VOC", num_classes=20, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
    heads=("filters",), input_convs=("filters",), input_size=(3, 256, 256), min_input_size=(3, 32, 32),
)

register_variants(DPM, [
    card("dpm_hog", notes="Not a neural network: a HOG pyramid (scikit-image, 8-px cells, 5 levels per octave), "
                          "one 5x5-cell root filter per class and 6 parts of 3x3 cells at twice the resolution with "
                          "quadratic deformation costs, placed by generalized distance transforms; fitted by latent "
                          "SVM with hard-negative mining (archzoo train calls its fit, no gradient loop). Its filters "
                          "are the 'parameters'; it does not export to ONNX.",
         kwargs=dict(root_sizes=((5, 5),), num_parts=6, part_size=(3, 3))),
])
