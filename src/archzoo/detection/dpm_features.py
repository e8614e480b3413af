"""The two pieces of the deformable part model that are not learnt: the HOG feature pyramid and
the generalized distance transform (Felzenszwalb, Girshick, McAllester & Ramanan, "Object
Detection with Discriminatively Trained Part Based Models", TPAMI 2010, sections 3-4).

* **HOG pyramid** (Dalal & Triggs 2005, via ``skimage.feature.hog``): the image is resized to
  scales ``top * 2^(-i / interval)`` (``interval`` levels per octave); each level is a map of
  36-d features (9 orientations x a 2x2 block of 8-px cells, L2-Hys normalised) with one
  feature per 8-px cell. A root filter looks at level ``l`` and its parts at level
  ``l - interval``: the same image at twice the resolution.
* **Generalized distance transform** (Felzenszwalb & Huttenlocher, "Distance Transforms of
  Sampled Functions", 2004): ``D(p) = max_q f(q) - a (q - p)^2 - b (q - p)`` for every ``p`` in
  linear time, by the lower envelope of the parabolas rooted at each ``q``; in 2-D one pass
  along the rows, one along the columns. It gives every root position its parts' best placements.
  Here the 1-D pass runs over many rows at once (numpy, one step per position along the row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CELL = 8  # pixels per HOG cell (the paper's and Dalal & Triggs')
HOG_DIM = 36  # 9 orientations x 2x2 cells per block


def hog_map(image: np.ndarray) -> np.ndarray:
    """``[H, W, C]`` (or ``[H, W]``) float image in 0..1 -> ``[h, w, 36]`` float32 HOG map: one
    feature per 8-px cell position (block ``(i, j)`` covers pixels ``[8i, 8i + 16)``), ``h =
    H // 8 - 1``. Images under two cells on a side give an empty map."""
    from skimage.feature import hog

    h, w = image.shape[:2]
    if h < 2 * CELL or w < 2 * CELL:
        return np.zeros((max(h // CELL - 1, 0), max(w // CELL - 1, 0), HOG_DIM), np.float32)
    grey = image.ndim == 2 or image.shape[2] == 1
    feats = hog(image[..., 0] if grey and image.ndim == 3 else image, orientations=9,
                pixels_per_cell=(CELL, CELL), cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=False,
                channel_axis=None if grey else -1)
    return np.ascontiguousarray(feats.reshape(feats.shape[0], feats.shape[1], HOG_DIM), dtype=np.float32)


@dataclass
class Pyramid:
    """``scales[i]`` (level ``i``'s size / the image's) and ``features[i]`` (``[h, w, 36]`` tensors)."""

    scales: list[float]
    features: list[torch.Tensor]
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scales)


def pyramid_scales(image_size: tuple[int, int], top: float, interval: int, min_cells: int) -> list[float]:
    """``top * 2^(-i / interval)`` for ``i = 0, 1, ...`` while the resized image still has
    ``min_cells`` HOG cells on its shorter side."""
    if not (top > 0 and interval >= 1):
        raise ValueError(f"the pyramid needs a top scale > 0 and interval >= 1, got {top} and {interval}")
    scales, i = [], 0
    while True:
        s = top * 2.0 ** (-i / interval)
        if min(image_size) * s / CELL - 1 < min_cells or i > 20 * interval:
            return scales
        scales.append(s)
        i += 1


def feature_pyramid(image: torch.Tensor, scales: list[float]) -> Pyramid:
    """The HOG maps of ``image`` (``[C, H, W]`` float in 0..1) resized to each of ``scales``
    (bilinear, antialiased when shrinking)."""
    if image.dim() != 3:
        raise ValueError(f"feature_pyramid: expected one [C, H, W] image, got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    feats = []
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = image if size == (h, w) else F.interpolate(image[None].float(), size=size, mode="bilinear",
                                                       align_corners=False, antialias=s < 1)[0]
        feats.append(torch.from_numpy(hog_map(x.clamp(0, 1).permute(1, 2, 0).cpu().numpy())))
    return Pyramid(list(scales), feats, (int(h), int(w)))


# ---------------------------------------------------------------- generalized distance transform


def distance_transform_1d(f: np.ndarray, a, b) -> tuple[np.ndarray, np.ndarray]:
    """For each row ``r`` of ``f`` (``[R, n]``): ``D[r, p] = max_q f[r, q] - a_r (q - p)^2 - b_r (q - p)``
    and the maximising ``q``, by the lower envelope of parabolas (O(n) per row; rows in parallel).
    ``a`` (> 0) and ``b``: scalars or one per row."""
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"distance_transform_1d: f must be [rows, n], got shape {f.shape}")
    rows, n = f.shape
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), (rows,))
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), (rows,))
    if not np.all(a > 0):
        raise ValueError("distance_transform_1d: the quadratic coefficients a must be > 0")
    if n == 0 or rows == 0:
        return f.copy(), np.zeros(f.shape, np.int64)
    # minimise g(q) + a (q - p)^2 + b (q - p), g = -f; parabola q as a function of p, h = g + a q^2 + b q
    q_all = np.arange(n, dtype=np.float64)
    hq = -f + a[:, None] * q_all ** 2 + b[:, None] * q_all
    r_idx = np.arange(rows)
    v = np.zeros((rows, n), np.int64)  # the envelope's parabolas (their roots q)
    z = np.full((rows, n + 1), np.inf)  # where each takes over
    z[:, 0] = -np.inf
    k = np.zeros(rows, np.int64)
    for q in range(1, n):
        while True:
            r = v[r_idx, k]
            s = (hq[:, q] - hq[r_idx, r]) / (2 * a * (q - r))
            pop = s <= z[r_idx, k]
            if not pop.any():
                break
            k = k - pop
        k = k + 1
        v[r_idx, k] = q
        z[r_idx, k] = s
        z[r_idx, k + 1] = np.inf
    # parabola in charge at p: the number of breakpoints z[1..] left of p
    k_at = (z[:, 1:, None] < q_all[None, None, :]).sum(1)
    arg = np.take_along_axis(v, k_at, axis=1)
    d = arg - q_all[None, :]
    value = np.take_along_axis(f, arg, axis=1) - a[:, None] * d ** 2 - b[:, None] * d
    return value, arg


def distance_transform_2d(response: np.ndarray, deformation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best part placements for every anchor: ``response`` ``[P, H, W]`` (part filter scores),
    ``deformation`` ``[P, 4]`` = ``(d_x, d_y, d_xx, d_yy)``; returns ``D [P, H, W]`` with
    ``D[p, y, x] = max_{y', x'} response[p, y', x'] - d . (dx, dy, dx^2, dy^2)`` (``dx = x' - x``,
    ``dy = y' - y``) and the maximising ``y' [P, H, W]``, ``x' [P, H, W]``."""
    response = np.asarray(response, dtype=np.float64)
    deformation = np.asarray(deformation, dtype=np.float64)
    P, H, W = response.shape
    if deformation.shape != (P, 4):
        raise ValueError(f"distance_transform_2d: deformation must be [{P}, 4], got {deformation.shape}")
    along_x, arg_x = distance_transform_1d(response.reshape(P * H, W), np.repeat(deformation[:, 2], H),
                                           np.repeat(deformation[:, 0], H))
    along_x, arg_x = along_x.reshape(P, H, W), arg_x.reshape(P, H, W)
    cols = along_x.transpose(0, 2, 1).reshape(P * W, H)
    value, arg_y = distance_transform_1d(cols, np.repeat(deformation[:, 3], W), np.repeat(deformation[:, 1], W))
    value, arg_y = value.reshape(P, W, H).transpose(0, 2, 1), arg_y.reshape(P, W, H).transpose(0, 2, 1)
    best_x = np.take_along_axis(arg_x, arg_y, axis=1)  # the row's best column, on the row chosen
    return np.ascontiguousarray(value), np.ascontiguousarray(arg_y), np.ascontiguousarray(best_x)


def correlate(features: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """Filter responses: ``features [h, w, D]`` and ``filters [N, fh, fw, D]`` -> ``[N, h - fh + 1,
    w - fw + 1]`` (valid positions; a map smaller than the filter gives an empty one)."""
    n, fh, fw, _ = filters.shape
    h, w = features.shape[:2]
    if h < fh or w < fw:
        return features.new_zeros((n, max(h - fh + 1, 0), max(w - fw + 1, 0)))
    return F.conv2d(features.permute(2, 0, 1)[None], filters.permute(0, 3, 1, 2).to(features.dtype))[0]


def pad_cells(features: torch.Tensor, pad_y: int, pad_x: int) -> torch.Tensor:
    """Zero cells around a ``[h, w, D]`` map, so objects cut by the image border can be found."""
    return F.pad(features, (0, 0, pad_x, pad_x, pad_y, pad_y))


def root_scale_for(box_h: float, box_w: float, root_h: int, root_w: int) -> float:
    """The scale at which a ``box_h x box_w`` box fills a root of ``root_h x root_w`` cells."""
    return math.sqrt((CELL * root_h / box_h) * (CELL * root_w / box_w))
