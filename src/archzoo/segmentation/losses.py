"""Segmentation losses, and the ``--loss`` grammar that sums them.

Terms (every one skips pixels at ``ignore_index``):

======== ==========================================================================================
``ce``    pixel-wise cross-entropy (Long et al. 2015, arXiv:1411.4038)
``wce``   cross-entropy with class weights by median frequency balancing (SegNet, arXiv:1511.00561)
``unet``  cross-entropy weighted per pixel by U-Net's border weight map (arXiv:1505.04597, eq. 2)
``dice``  soft Dice over the classes present in the batch (V-Net, Milletari et al. 2016, arXiv:1606.04797)
``focal`` focal loss, softmax form, gamma 2 (Lin et al. 2017, arXiv:1708.02002)
======== ==========================================================================================

A spec is a sum of terms, each with an optional weight: ``term ("+" term)*`` where ``term`` is
``[weight "*"] name``, e.g. ``ce``, ``ce+dice``, ``wce+dice``, ``0.5*ce+dice``, ``unet``
(spaces are ignored; each name at most once). :func:`parse_loss` reads it and
:class:`SegmentationLoss` computes it.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

from ..data.dataset import IGNORE_INDEX
from ..validate import UserError
from .base import upsample_like

LOSS_TERMS = {
    "ce": "cross-entropy",
    "wce": "cross-entropy with median-frequency class weights (SegNet)",
    "unet": "cross-entropy weighted by U-Net's border weight map",
    "dice": "soft Dice",
    "focal": "focal loss (gamma 2)",
}
CLASS_WEIGHTED = ("wce", "unet")  # the terms that use the training set's class weights

_TERM = re.compile(r"^(?:(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)\*)?([a-z]+)$")


def parse_loss(spec: str) -> list[tuple[float, str]]:
    """``[(weight, name), ...]`` of a loss spec such as ``"0.5*ce+dice"`` (see the module doc)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"loss must be a sum of terms such as 'ce+dice' (terms: {', '.join(LOSS_TERMS)}), got {spec!r}")
    terms, seen = [], set()
    for part in re.sub(r"\s+", "", spec.lower()).split("+"):
        m = _TERM.match(part)
        if m is None or m.group(2) not in LOSS_TERMS:
            raise UserError(f"loss {spec!r}: cannot read the term {part!r}; a term is [WEIGHT*]NAME with NAME one of "
                            f"{', '.join(LOSS_TERMS)} (e.g. 'ce+dice', '0.5*ce+dice')")
        weight, name = float(m.group(1) or 1.0), m.group(2)
        if not weight > 0 or not math.isfinite(weight):
            raise UserError(f"loss {spec!r}: the weight of {name} must be a positive number, got {weight}")
        if name in seen:
            raise UserError(f"loss {spec!r} names {name} twice")
        seen.add(name)
        terms.append((weight, name))
    return terms


# --- class weights (SegNet) ---------------------------------------------------------------------
def pixel_counts(masks: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX,
                 chunk: int = 64) -> torch.Tensor:
    """Pixels of each class in each mask: int64 ``[N, num_classes]`` from masks ``[N, H, W]``
    (pixels at ``ignore_index`` not counted)."""
    rows = []
    for part in masks.split(chunk):
        m = part.reshape(len(part), -1).long()
        valid = m != ignore_index
        index = (torch.arange(len(part))[:, None] * num_classes + m.clamp(max=num_classes - 1))[valid]
        rows.append(torch.bincount(index, minlength=len(part) * num_classes).view(len(part), num_classes))
    return torch.cat(rows) if rows else torch.zeros(0, num_classes, dtype=torch.int64)


def median_frequency_weights(counts: torch.Tensor) -> torch.Tensor:
    """SegNet's class weights (Badrinarayanan et al., arXiv:1511.00561, sec. 3.1, after Eigen &
    Fergus 2015): ``median(freq) / freq(c)``, where ``freq(c)`` is the pixels of class c divided by
    the pixels of the images where c is present.

    ``counts``: per-image pixel counts ``[N, K]`` (:func:`pixel_counts`; the definition above), or
    per-class totals ``[K]`` (e.g. :meth:`ImageDataset.class_counts`; then ``freq(c)`` is over all
    pixels). The median is over the classes present; an absent class gets weight 1 (it never is
    a target, so its weight does not matter to the training loss).
    """
    counts = torch.as_tensor(counts).double()
    if counts.ndim == 1:
        present = counts > 0
        freq = counts / counts.sum().clamp(min=1)
    elif counts.ndim == 2:
        has = counts > 0
        present = has.any(0)
        image_pixels = (counts.sum(1, keepdim=True) * has).sum(0)  # pixels of the images showing c
        freq = counts.sum(0) / image_pixels.clamp(min=1)
    else:
        raise ValueError(f"counts must be [K] or [N, K] pixel counts, got shape {tuple(counts.shape)}")
    weights = torch.ones_like(freq)
    if present.any():
        weights[present] = freq[present].quantile(0.5) / freq[present]  # the middle two's mean if even
    return weights.float()


def dataset_class_weights(dataset, num_classes: int | None = None) -> torch.Tensor:
    """:func:`median_frequency_weights` of a segmentation :class:`~archzoo.data.ImageDataset`
    (its masks are held in memory, so this reads no image)."""
    masks = getattr(dataset, "targets", {}).get("mask")
    if masks is None:
        raise ValueError("class weights need a segmentation dataset (targets 'mask' [N, H, W])")
    return median_frequency_weights(pixel_counts(masks, num_classes or dataset.num_classes))


# --- U-Net's border weight map ------------------------------------------------------------------
def unet_weight_map(mask: torch.Tensor, *, class_weights: torch.Tensor | None = None, w0: float = 10.0,
                    sigma: float = 5.0, background: int = 0, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """U-Net's pixel weights (Ronneberger et al., arXiv:1505.04597, eq. 2) of one mask ``[H, W]``:

        w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

    ``w_c``: ``class_weights[mask]`` (1 without them); cells: the connected components (4-
    neighbourhood) of the pixels that are neither ``background`` nor ``ignore_index``; ``d1``,
    ``d2``: the distances to the nearest and the second-nearest cell. As in the paper's figure 3d
    the border term is put on background pixels, so the thin gaps between touching cells weigh
    most. Each cell's distances are computed within its box grown by ``6 sigma``: a pixel farther
    than that from its second cell gets no border term (the omitted term is below
    ``w0 * exp(-18)``, 1.5e-7 for w0 = 10). Returns float32 on the mask's device.
    """
    import numpy as np
    from scipy import ndimage

    m = mask.detach().cpu().numpy()
    cells, n = ndimage.label((m != background) & (m != ignore_index))
    if class_weights is None:
        w = np.ones(m.shape, np.float32)
    else:
        cw = class_weights.detach().cpu().float().numpy()
        w = cw[np.where(m == ignore_index, 0, m).clip(0, len(cw) - 1)]
        w[m == ignore_index] = 0.0
    if n >= 2:
        reach = math.ceil(6 * sigma)
        d1 = np.full(m.shape, np.inf, np.float32)
        d2 = np.full(m.shape, np.inf, np.float32)
        for i, (ys, xs) in enumerate(ndimage.find_objects(cells), start=1):
            ys = slice(max(ys.start - reach, 0), ys.stop + reach)
            xs = slice(max(xs.start - reach, 0), xs.stop + reach)
            d = ndimage.distance_transform_edt(cells[ys, xs] != i).astype(np.float32)
            a = d1[ys, xs]
            d2[ys, xs] = np.minimum(d2[ys, xs], np.maximum(a, d))
            d1[ys, xs] = np.minimum(a, d)
        border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma ** 2))
        w = w + np.where(m == background, border, 0.0).astype(np.float32)
    return torch.from_numpy(w).to(mask.device)


# --- the terms ----------------------------------------------------------------------------------
def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = IGNORE_INDEX,
                  class_weights: torch.Tensor | None = None, pixel_weights: torch.Tensor | None = None,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Pixel cross-entropy ``[B, K, H, W]`` vs ``[B, H, W]``, the mean over scored pixels, each
    weighted by its class weight or by ``pixel_weights`` ``[B, H, W]`` (the mean is then the
    weighted one: sum(w * ce) / sum(w), as :func:`torch.nn.functional.cross_entropy` weighs classes)."""
    if pixel_weights is None:
        return F.cross_entropy(logits, target, weight=class_weights, ignore_index=ignore_index,
                               label_smoothing=label_smoothing)
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, label_smoothing=label_smoothing,
                         reduction="none")
    w = pixel_weights.to(ce.dtype) * (target != ignore_index)
    return (ce * w).sum() / w.sum().clamp(min=1e-12)


def _one_hot(target: torch.Tensor, num_classes: int, valid: torch.Tensor) -> torch.Tensor:
    """``[B, K, H, W]`` float one-hot of the scored pixels (zeros where not scored)."""
    t = target.masked_fill(~valid, 0)
    return torch.zeros(t.shape[0], num_classes, *t.shape[1:], device=t.device).scatter_(
        1, t[:, None], valid[:, None].float())


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = IGNORE_INDEX,
              eps: float = 1e-6) -> torch.Tensor:
    """``1 - mean_c 2 |P_c G_c| / (|P_c| + |G_c|)``: soft Dice of the softmax ``P`` against the
    one-hot truth ``G``, summed over the batch's scored pixels and averaged over the classes
    present in the batch's truth (an absent class would ask for probability ~0 on every pixel)."""
    valid = target != ignore_index
    probs = logits.float().softmax(1) * valid[:, None]
    truth = _one_hot(target, logits.shape[1], valid)
    dims = (0, 2, 3)
    inter, total = (probs * truth).sum(dims), probs.sum(dims) + truth.sum(dims)
    dice = 2 * inter / total.clamp(min=eps)
    present = truth.sum(dims) > 0
    if not present.any():
        return probs.sum() * 0.0
    return 1.0 - dice[present].mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = IGNORE_INDEX, gamma: float = 2.0,
               alpha: torch.Tensor | None = None) -> torch.Tensor:
    """``-alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the softmax probability of the true class
    (Lin et al., arXiv:1708.02002, eq. 5, in its multi-class softmax form), the mean over scored
    pixels; ``alpha``: optional per-class weights."""
    valid = target != ignore_index
    t = target.masked_fill(~valid, 0)
    logp = logits.float().log_softmax(1).gather(1, t[:, None])[:, 0]
    loss = -((1 - logp.exp()) ** gamma) * logp
    if alpha is not None:
        loss = loss * alpha.to(loss)[t]
    return (loss * valid).sum() / valid.sum().clamp(min=1)


class SegmentationLoss:
    """A loss spec (see the module doc) as a callable ``loss(logits, mask) -> scalar``.

    ``class_weights`` (``[K]``, e.g. :func:`dataset_class_weights`) are needed by ``wce`` and
    used by ``unet`` as its ``w_c`` (1 without them); ``label_smoothing`` applies to the
    cross-entropy terms; ``background``, ``w0``, ``sigma``: U-Net's weight map. Logits smaller
    than the mask (a stride-8 output) are upsampled bilinearly first.
    """

    def __init__(self, spec: str = "ce", num_classes: int | None = None, *, ignore_index: int = IGNORE_INDEX,
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0, background: int = 0,
                 w0: float = 10.0, sigma: float = 5.0):
        self.spec, self.terms = spec, parse_loss(spec)
        self.names = [name for _, name in self.terms]
        if "wce" in self.names and class_weights is None:
            raise ValueError(f"loss {spec!r}: wce needs class weights (median_frequency_weights of the training "
                             "set's pixel counts)")
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if num_classes is not None and len(class_weights) != num_classes:
                raise ValueError(f"{len(class_weights)} class weights for {num_classes} classes")
        self.class_weights = class_weights
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing
        self.background, self.w0, self.sigma = background, w0, sigma

    def pixel_weights(self, mask: torch.Tensor) -> torch.Tensor | None:
        """U-Net's weight maps ``[B, H, W]`` of a batch of masks when the spec has ``unet``, else
        ``None``; compute once per batch and pass to every call (main and auxiliary logits)."""
        if "unet" not in self.names:
            return None
        return torch.stack([unet_weight_map(m, class_weights=self.class_weights, w0=self.w0, sigma=self.sigma,
                                            background=self.background, ignore_index=self.ignore_index)
                            for m in mask])

    def __call__(self, logits: torch.Tensor, mask: torch.Tensor, pixel_weights: torch.Tensor | None = None):
        logits = upsample_like(logits.float(), mask.shape[-2:])
        cw = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if "unet" in self.names and pixel_weights is None:
            pixel_weights = self.pixel_weights(mask)
        total = 0.0
        for weight, name in self.terms:
            if name in ("ce", "wce", "unet"):
                term = cross_entropy(logits, mask, ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
                                     class_weights=cw if name == "wce" else None,
                                     pixel_weights=pixel_weights if name == "unet" else None)
            elif name == "dice":
                term = dice_loss(logits, mask, ignore_index=self.ignore_index)
            else:
                term = focal_loss(logits, mask, ignore_index=self.ignore_index)
            total = total + weight * term
        return total

    def __repr__(self) -> str:
        return f"SegmentationLoss({self.spec!r})"
