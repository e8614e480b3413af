"""Fitting a :class:`~archzoo.detection.dpm.DPM`: the latent SVM of Felzenszwalb et al. (TPAMI
2010, section 5), one class at a time, every class's examples mined from one scoring of each
training image per round.

1. **Roots** (phase 1): every positive box at its best-fitting root placement in the pyramid
   (the paper's warped positives), against random windows that overlap no box of the class
   (IoU < 0.3); a linear SVM per component (components split the positives by aspect ratio).
2. **Parts** (phase 2): the root filter interpolated to twice its resolution; each part greedily
   takes the window of highest positive weight energy (then cleared), its filter the
   interpolated root there; deformation costs (0, 0, 0.1, 0.1).
3. **Latent rounds** (phase 3): each positive's feature vector is that of the best-scoring
   placement (component, level, root position with IoU >= 0.7, parts by distance transform);
   hard negatives are the windows scoring above -1 that overlap no box of the class (IoU < 0.3);
   a linear SVM (hinge loss, ``LinearSVC``) on positives plus the negative cache; the cache
   keeps the negatives inside the margin. Quadratic deformation weights are kept >= 0.01.

Finally a logistic fit of the SVM scores (positives vs. cached negatives) calibrates each
class's scores to 0..1. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from ..validate import UserError
from .base import as_image_list, check_targets
from .dpm_features import HOG_DIM, pad_cells, root_scale_for

MIN_QUADRATIC = 0.01  # lower bound on the quadratic deformation weights (the costs stay convex)


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of ``boxes [..., 4]`` with one box."""
    ix = np.clip(np.minimum(boxes[..., 2], box[2]) - np.maximum(boxes[..., 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[..., 3], box[3]) - np.maximum(boxes[..., 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return inter / (area + (box[2] - box[0]) * (box[3] - box[1]) - inter)


class _Image:
    """One training image: its pyramid (padded maps), the boxes of each class."""

    def __init__(self, model, image: torch.Tensor, target: dict):
        self.pyr = model.pyramid(image)
        py, px = model.pad
        self.root_maps = [pad_cells(f, py, px) for f in self.pyr.features]
        self.part_maps = [pad_cells(f, 2 * py, 2 * px) for f in self.pyr.features]
        keep = ~target.get("difficult", torch.zeros(len(target["labels"]), dtype=torch.bool))
        self.boxes = target["boxes"][keep].double().numpy()
        self.labels = target["labels"][keep].numpy()


class _Features:
    """The latent feature vector of a placement: root window, parts, deformation, bias; one block per component."""

    def __init__(self, model):
        self.model = model
        hmax, wmax = model.filters.root.shape[1:3]
        ph, pw = model.part_size
        self.root_len = hmax * wmax * HOG_DIM
        self.part_len = ph * pw * HOG_DIM
        self.block = self.root_len + model.num_parts * (self.part_len + 4) + 1
        self.size = self.block * model.num_components

    def root_only(self, img: _Image, row: int, level: int, y: int, x: int) -> np.ndarray:
        hmax, wmax = self.model.filters.root.shape[1:3]
        h, w = self.model.component_size(row)
        win = img.root_maps[level][y:y + hmax, x:x + wmax].clone()
        if win.shape[:2] != (hmax, wmax):
            win = F.pad(win, (0, 0, 0, wmax - win.shape[1], 0, hmax - win.shape[0]))
        win[h:], win[:, w:] = 0, 0
        return win.reshape(-1).double().numpy()

    def full(self, img: _Image, row: int, level: int, y: int, x: int, parts: np.ndarray) -> np.ndarray:
        m = self.model
        out = np.zeros(self.size)
        o = (row % m.num_components) * self.block
        out[o:o + self.root_len] = self.root_only(img, row, level, y, x)
        o += self.root_len
        ph, pw = m.part_size
        fine = img.part_maps[level - m.interval]
        anchors = m.filters.anchors[row].round().long().numpy()
        for i in range(m.num_parts):
            qy, qx = int(parts[i, 0]), int(parts[i, 1])
            out[o:o + self.part_len] = fine[qy:qy + ph, qx:qx + pw].reshape(-1).double().numpy()
            o += self.part_len
            dy, dx = qy - (2 * y + anchors[i, 0]), qx - (2 * x + anchors[i, 1])
            out[o:o + 4] = -np.array([dx, dy, dx * dx, dy * dy], dtype=np.float64)
            o += 4
        out[o] = 1.0 * 10.0  # the bias feature (BIAS_FEATURE)
        return out


def _svm(X: np.ndarray, y: np.ndarray, C: float, seed: int) -> np.ndarray:
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=C, loss="hinge", fit_intercept=False, dual=True, max_iter=20000, tol=1e-4, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on separable caches: the solution is still used
        svm.fit(X, y)
    return svm.coef_[0].astype(np.float64)


def _set_class(model, label: int, w: np.ndarray, feats: _Features, parts: bool = True) -> None:
    """Write the SVM weights ``w`` (one block per component) into class ``label``'s filter rows."""
    f, P = model.filters, model.num_parts
    ph, pw = model.part_size
    hmax, wmax = f.root.shape[1:3]
    with torch.no_grad():
        for m, row in enumerate(model.rows_of(label)):
            b = w[m * feats.block:(m + 1) * feats.block]
            f.root[row] = torch.from_numpy(b[:feats.root_len].reshape(hmax, wmax, HOG_DIM)).float()
            o = feats.root_len
            if parts:
                for i in range(P):
                    f.parts[row, i] = torch.from_numpy(b[o:o + feats.part_len].reshape(ph, pw, HOG_DIM)).float()
                    o += feats.part_len
                    d = b[o:o + 4].copy()
                    d[2:] = np.maximum(d[2:], MIN_QUADRATIC)
                    f.deformation[row, i] = torch.from_numpy(d).float()
                    o += 4
            else:
                o += P * (feats.part_len + 4)
            f.bias[row] = float(b[o] * 10.0)


def _init_parts(model, row: int) -> None:
    """Parts on the interpolated root's highest-energy windows (phase 2)."""
    f, P = model.filters, model.num_parts
    ph, pw = model.part_size
    h, w = model.component_size(row)
    root = f.root[row, :h, :w].permute(2, 0, 1)[None].float()
    fine = F.interpolate(root, scale_factor=2, mode="bilinear", align_corners=False)[0]  # [D, 2h, 2w]
    energy = fine.clamp(min=0).pow(2).sum(0)
    with torch.no_grad():
        for i in range(P):
            window = F.avg_pool2d(energy[None, None], (ph, pw), stride=1)[0, 0] * ph * pw
            j = int(torch.argmax(window))
            y, x = divmod(j, window.shape[1])
            f.parts[row, i] = fine[:, y:y + ph, x:x + pw].permute(1, 2, 0)
            f.anchors[row, i] = torch.tensor([y, x], dtype=torch.float32)
            f.deformation[row, i] = torch.tensor([0.0, 0.0, 0.1, 0.1])
            energy[y:y + ph, x:x + pw] = 0


def _component_of(model, box: np.ndarray) -> int:
    """The component whose root aspect ratio is closest to the box's (log ratio)."""
    aspect = np.log((box[3] - box[1]) / (box[2] - box[0]))
    return int(np.argmin([abs(aspect - np.log(h / w)) for h, w in model.root_sizes]))


def _best_root_fit(model, img: _Image, row: int, box: np.ndarray) -> tuple[float, int, int, int]:
    """``(iou, level, y, x)``: the root placement of ``row`` overlapping ``box`` most (over root levels)."""
    best = (0.0, -1, 0, 0)
    hmax, wmax = model.filters.root.shape[1:3]
    for level in range(model.interval, len(img.pyr)):
        H, W = img.root_maps[level].shape[0] - hmax + 1, img.root_maps[level].shape[1] - wmax + 1
        if H <= 0 or W <= 0:
            continue
        iou = _iou(model.window_boxes(row, img.pyr.scales[level], H, W), box)
        j = int(np.argmax(iou))
        if iou.flat[j] > best[0]:
            best = (float(iou.flat[j]), level, *divmod(j, W))
    return best


def fit_dpm(model, images, targets: list[dict], *, rounds: int = 4, C: float = 0.01, seed: int = 0,
            negatives_per_image: int = 20, cache_limit: int = 6000, overlap: float = 0.7,
            max_positives: int | None = 400, max_images: int | None = 300, log=None) -> list[dict]:
    """Fit ``model``'s filters to ``images`` (``[C, H, W]`` floats in 0..1, or a batch) and their
    ``targets`` (``{"boxes", "labels"}`` per image; ``difficult`` boxes are left out).

    ``rounds``: latent relabelling rounds (each: positives relabelled, negatives mined, SVM refit);
    ``C``: the SVM's hinge-loss weight; ``negatives_per_image``: hardest new negatives kept per
    image, class and round (also the random negatives per image of phase 1); ``cache_limit``:
    negatives kept per class; ``overlap``: the IoU a positive's latent root must reach;
    ``max_positives``: positives per class (a seeded sample beyond it); ``max_images``: images used
    (a seeded sample beyond it: each image's pyramid is kept in memory during the fit); ``log``: ``log(dict)`` after
    each phase. Returns one record per round (examples, SVM objective, seconds)."""
    images = as_image_list(images)
    targets = check_targets(targets, len(images), model.num_classes)
    if rounds < 0 or not C > 0 or negatives_per_image < 1 or not 0 < overlap <= 1:
        raise UserError(f"DPM fit: need rounds >= 0, C > 0, negatives_per_image >= 1, 0 < overlap <= 1; got rounds "
                        f"{rounds}, C {C}, negatives_per_image {negatives_per_image}, overlap {overlap}")
    if not any(len(t["boxes"]) for t in targets):
        raise UserError("DPM fit: the training images hold no boxes; a detector needs positives")
    rng = np.random.default_rng(seed)
    if max_images is not None and len(images) > max_images:
        pick = np.sort(rng.choice(len(images), max_images, replace=False))
        images, targets = [images[j] for j in pick], [targets[j] for j in pick]
    model.eval()
    K, M = model.num_classes, model.num_components
    feats = _Features(model)
    history: list[dict] = []
    t0 = time.perf_counter()

    # positives per class: (image index, box, component)
    positives = {k: [] for k in range(K)}
    for i, t in enumerate(targets):
        keep = ~t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool))
        for box, label in zip(t["boxes"][keep].double().numpy(), t["labels"][keep].tolist()):
            positives[label].append((i, box, _component_of(model, box)))
    for k in range(K):
        if max_positives is not None and len(positives[k]) > max_positives:
            pick = np.sort(rng.choice(len(positives[k]), max_positives, replace=False))
            positives[k] = [positives[k][j] for j in pick]
    # the finest root scale: where the smallest positive fills its component's root
    needed = [root_scale_for(b[3] - b[1], b[2] - b[0], *model.root_sizes[m]) for k in positives for _, b, m in positives[k]]
    with torch.no_grad():
        model.top_scale.fill_(min(max(needed), model.max_scale))
    data = [_Image(model, img, t) for img, t in zip(images, targets)]

    # phase 1: roots from best-fitting placements vs. random negatives
    hmax, wmax = model.filters.root.shape[1:3]
    for k in range(K):
        rows = model.rows_of(k)
        w = np.zeros(feats.size)
        for m, row in enumerate(rows):
            pos = []
            for i, box, comp in positives[k]:
                if comp != m:
                    continue
                iou, level, y, x = _best_root_fit(model, data[i], row, box)
                if iou >= 0.5:
                    pos.append(feats.root_only(data[i], row, level, y, x))
            neg = []
            for i, img in enumerate(data):
                levels = [lv for lv in range(model.interval, len(img.pyr))
                          if img.root_maps[lv].shape[0] >= hmax and img.root_maps[lv].shape[1] >= wmax]
                for _ in range(negatives_per_image if levels else 0):
                    lv = int(rng.choice(levels))
                    H, W = img.root_maps[lv].shape[0] - hmax + 1, img.root_maps[lv].shape[1] - wmax + 1
                    y, x = int(rng.integers(H)), int(rng.integers(W))
                    box = model.window_boxes(row, img.pyr.scales[lv], H, W)[y, x]
                    if all(_iou(box[None], b)[0] < 0.3 for b, lab in zip(img.boxes, img.labels) if lab == k):
                        neg.append(feats.root_only(img, row, lv, y, x))
            if not pos or not neg:
                continue
            X = np.concatenate([np.stack(pos), np.stack(neg)])
            X = np.concatenate([X, np.full((len(X), 1), 10.0)], 1)
            wr = _svm(X, np.r_[np.ones(len(pos)), -np.ones(len(neg))], C, seed)
            w[m * feats.block:m * feats.block + feats.root_len] = wr[:-1]
            w[(m + 1) * feats.block - 1] = wr[-1]
        _set_class(model, k, w, feats, parts=False)
        with torch.no_grad():
            for m, row in enumerate(rows):  # a component without positives never fires
                if not any(c == m for _, _, c in positives[k]):
                    model.filters.bias[row] = -100.0
    if log:
        log({"phase": "roots", "seconds": time.perf_counter() - t0})
    # phase 2: parts
    for row in range(K * M):
        _init_parts(model, row)

    # phase 3: latent rounds
    cache = {k: {} for k in range(K)}  # key -> feature vector
    for r in range(rounds):
        tr = time.perf_counter()
        pos_vecs = {k: [] for k in range(K)}
        for i, img in enumerate(data):
            levels = model.score_pyramid(img.pyr)
            if not levels:
                continue
            for k in range(K):
                rows = model.rows_of(k)
                boxes_k = img.boxes[img.labels == k]
                # latent positives: the best placement overlapping each box enough
                for box in boxes_k:
                    best = None
                    for ls in levels:
                        for row in rows:
                            s = ls.scores[row]
                            ok = _iou(model.window_boxes(row, ls.scale, *s.shape), box) >= overlap
                            if not ok.any():
                                continue
                            masked = np.where(ok, s, -np.inf)
                            j = int(np.argmax(masked))
                            if np.isfinite(masked.flat[j]) and (best is None or masked.flat[j] > best[0]):
                                best = (masked.flat[j], ls, row, *divmod(j, s.shape[1]))
                    if best is not None:
                        _, ls, row, y, x = best
                        pos_vecs[k].append(feats.full(img, row, ls.level, y, x, ls.placement(row, y, x)))
                # hard negatives: high scores away from every box of the class
                found = []
                for ls in levels:
                    for row in rows:
                        s = ls.scores[row]
                        hard = s >= -1.0
                        if not hard.any():
                            continue
                        wb = model.window_boxes(row, ls.scale, *s.shape)
                        for box in boxes_k:
                            hard &= _iou(wb, box) < 0.3
                        for j in np.flatnonzero(hard):
                            found.append((s.flat[j], (i, row, ls.level, *divmod(int(j), s.shape[1])), ls))
                found.sort(key=lambda e: (-e[0], e[1]))
                for _, key, ls in found[:negatives_per_image]:
                    if key not in cache[k]:
                        _, row, level, y, x = key
                        cache[k][key] = feats.full(img, row, level, y, x, ls.placement(row, y, x))
        objective, n_pos, n_neg = 0.0, 0, 0
        for k in range(K):
            if not pos_vecs[k] or not cache[k]:
                continue
            keys = sorted(cache[k])
            X = np.concatenate([np.stack(pos_vecs[k]), np.stack([cache[k][q] for q in keys])])
            y = np.r_[np.ones(len(pos_vecs[k])), -np.ones(len(keys))]
            w = _svm(X, y, C, seed)
            _set_class(model, k, w, feats)
            w = _current_weights(model, k, feats)  # with the deformation bound applied
            margins = X @ w
            objective += 0.5 * float(w @ w) + C * float(np.maximum(0, 1 - y * margins).sum())
            n_pos, n_neg = n_pos + len(pos_vecs[k]), n_neg + len(keys)
            # shrink the cache to the negatives inside the margin, the hardest first, at most cache_limit
            neg_scores = margins[len(pos_vecs[k]):]
            order = [j for j in np.argsort(-neg_scores, kind="stable") if neg_scores[j] >= -1.0][:cache_limit]
            cache[k] = {keys[j]: cache[k][keys[j]] for j in order}
            _calibrate(model, k, margins[:len(pos_vecs[k])], neg_scores)
        record = {"round": r + 1, "positives": n_pos, "negatives": n_neg, "objective": objective,
                  "seconds": time.perf_counter() - tr}
        history.append(record)
        if log:
            log(record)
    return history


def _current_weights(model, label: int, feats: _Features) -> np.ndarray:
    """Class ``label``'s filters as one weight vector (the inverse of :func:`_set_class`)."""
    f, P = model.filters, model.num_parts
    out = np.zeros(feats.size)
    for m, row in enumerate(model.rows_of(label)):
        o = m * feats.block
        out[o:o + feats.root_len] = f.root[row].reshape(-1).double().numpy()
        o += feats.root_len
        for i in range(P):
            out[o:o + feats.part_len] = f.parts[row, i].reshape(-1).double().numpy()
            o += feats.part_len
            out[o:o + 4] = f.deformation[row, i].double().numpy()
            o += 4
        out[o] = float(f.bias[row]) / 10.0
    return out


def _calibrate(model, label: int, pos: np.ndarray, neg: np.ndarray) -> None:
    """A logistic map from SVM scores to 0..1 for class ``label`` (Platt scaling)."""
    from sklearn.linear_model import LogisticRegression

    if not len(pos) or not len(neg):
        return
    x = np.r_[pos, neg][:, None]
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    lr = LogisticRegression(C=1.0, class_weight="balanced").fit(x, y)  # 0.5 near the SVM boundary
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not a > 0:
        a, b = 1.0, 0.0
    with torch.no_grad():
        for row in model.rows_of(label):
            model.filters.calibration[row] = torch.tensor([a, b])
