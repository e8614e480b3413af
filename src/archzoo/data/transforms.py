"""Per-sample transforms (``torchvision.transforms.v2``) from uint8 ``[C, H, W]`` images to
normalised float32 ``[C, s, s]`` model inputs.

Two regimes, chosen by the input size (``small=None``: ``input_size <= 64``):

* small images (CIFAR, digits, shapes): train = resize to ``s x s`` if needed, pad by ``pad``
  and take a random ``s x s`` crop, random horizontal flip (He et al. 2015, arXiv:1512.03385,
  section 4.2); eval = resize to ``s x s``.
* large images (photos): train = random-resized crop (Szegedy et al. 2014, arXiv:1409.4842) and
  flip; eval = resize the shorter side to ``s / crop_pct`` and take the centre ``s x s`` crop.

``augment`` adds, after the geometric part: ``"randaugment"`` (Cubuk et al. 2019,
arXiv:1909.13719) or ``"trivialaugment"`` (Müller & Hutter 2021, arXiv:2103.10158);
``"none"`` makes the train transform equal to the eval one. ``color_jitter`` > 0 adds
brightness/contrast/saturation jitter of that strength in training.

Channels are matched to the model first (``in_chans``, default ``len(mean)``): a grey image is
replicated to RGB, an RGB image is converted to grey with the ITU-R 601 luma weights.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

AUGMENTS = ("none", "basic", "randaugment", "trivialaugment")
# detection recipes of DenseTransform (the ``augment`` option of a detection run); see its doc
DETECTION_AUGMENTS = ("ssd", "scale-jitter")
PER_BOX_KEYS = ("labels", "difficult")  # per-object target tensors that go with their boxes


class MatchChannels(torch.nn.Module):
    """uint8 or float ``[..., C, H, W]`` with C in {1, 3} -> ``in_chans`` channels (1 or 3)."""

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3 to match image channels, got {in_chans}")
        self.in_chans = in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-3]
        if c == self.in_chans:
            return x
        if c == 1:
            return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
        if c == 3:
            return TF.rgb_to_grayscale(x, num_output_channels=1)
        raise ValueError(f"cannot convert a {c}-channel image to {self.in_chans} channels")

    def extra_repr(self) -> str:
        return f"in_chans={self.in_chans}"


def build_transform(
    train: bool,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: str = "basic",
    *,
    in_chans: int | None = None,
    color_jitter: float = 0.0,
    small: bool | None = None,
    pad: int = 4,
    flip: bool = True,
    scale: tuple[float, float] = (0.08, 1.0),
    crop_pct: float = 0.875,
    erase: float = 0.0,
) -> v2.Compose:
    """The per-sample transform for training (``train=True``) or evaluation; see the module doc."""
    if augment in DETECTION_AUGMENTS:
        raise ValueError(f"augment {augment!r} is a detection recipe (it moves boxes); a classifier takes one of {AUGMENTS}")
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if len(mean) != len(std):
        raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
    s = int(input_size)
    small = s <= 64 if small is None else small
    ops: list = [MatchChannels(in_chans or len(mean))]
    if not train or augment == "none":
        if small:
            ops.append(v2.Resize((s, s), antialias=True))
        else:
            ops += [v2.Resize(int(s / crop_pct), antialias=True), v2.CenterCrop(s)]
    else:
        if small:
            ops += [v2.Resize((s, s), antialias=True), v2.RandomCrop(s, padding=pad) if pad else v2.Identity()]
        else:
            ops.append(v2.RandomResizedCrop(s, scale=scale, antialias=True))
        if flip:
            ops.append(v2.RandomHorizontalFlip())
        if augment == "randaugment":
            ops.append(v2.RandAugment())
        elif augment == "trivialaugment":
            ops.append(v2.TrivialAugmentWide())
        if color_jitter > 0:
            ops.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and augment != "none" and erase > 0:  # random erasing, as BatchAugment does it
        ops.append(v2.RandomErasing(p=erase, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), value="random"))
    return v2.Compose(ops)


class DenseTransform:
    """``(uint8 image [C, H, W], target) -> (normalised float32 [C', s, s], target)`` for
    detection and segmentation: the geometric part runs on torchvision ``tv_tensors``, so boxes
    (``target["boxes"]``, xyxy pixels), the class mask (``target["mask"]``) and instance masks
    (``target["masks"]``, ``[k, H, W]``, one per box) move with the image.

    Train: resize + pad-crop (small images) or a random-resized crop, and a horizontal flip, as
    :func:`build_transform` does for classification; the pixels a crop pads are
    :data:`~archzoo.data.IGNORE_INDEX` in masks (0 in instance masks). A box a crop cuts becomes
    the visible part of the box; with ``boxes``, a box left with no area is dropped with its label
    (and instance mask). Eval: resize to ``s x s`` (the whole image, nothing cropped). No colour
    augmentation here: it moves nothing.

    ``recipe`` (training only; the ``augment`` option): ``"basic"`` is the above, ``"none"`` the
    eval transform, and the detection recipes of :data:`DETECTION_AUGMENTS`:

    * ``"ssd"``: SSD's (Liu et al. 2016, arXiv:1512.02325, section 2.2 and 3.6, as torchvision's
      detection references run it): photometric distortion (brightness, contrast, saturation,
      hue, channel order; :class:`~torchvision.transforms.v2.RandomPhotometricDistort`), zoom out
      onto a canvas up to 4x the image (p 0.5, filled with the mean colour), an IoU-aware random
      crop (:class:`~torchvision.transforms.v2.RandomIoUCrop`: a crop overlapping some object by
      IoU 0.1..0.9, or the whole image; an object whose centre falls outside the crop is dropped,
      as in SSD), a flip, and a resize to ``s x s``.
    * ``"scale-jitter"``: large-scale jitter (Ghiasi et al. 2021, arXiv:2012.07177): resize to
      0.3..2x of ``s`` (aspect kept), take or pad a random ``s x s`` crop, flip.

    With boxes, boxes are clipped to the image and those left without area are dropped with
    their per-object targets (:data:`PER_BOX_KEYS`, instance masks).
    """

    def __init__(self, train: bool, input_size: int, mean: Sequence[float], std: Sequence[float], *,
                 in_chans: int | None = None, small: bool | None = None, pad: int = 4, flip: bool = True,
                 scale: tuple[float, float] = (0.08, 1.0), boxes: bool = False, recipe: str = "basic") -> None:
        from torchvision import tv_tensors

        from .dataset import IGNORE_INDEX

        if recipe not in ("basic", "none", *DETECTION_AUGMENTS):
            raise ValueError(f"recipe must be basic, none or one of {DETECTION_AUGMENTS}, got {recipe!r}")
        if recipe in DETECTION_AUGMENTS and not boxes:
            raise ValueError(f"the {recipe!r} recipe is for detection (boxes=True)")
        s = int(input_size)
        small = s <= 64 if small is None else small
        fill = {tv_tensors.Mask: IGNORE_INDEX, "others": 0}
        mean_fill = {tv_tensors.Mask: IGNORE_INDEX, "others": [round(255 * m) for m in mean] if len(mean) == 3 else 0}
        if not train or recipe == "none":
            ops: list = [v2.Resize((s, s), antialias=True)]
        elif recipe == "ssd":
            ops = [v2.RandomPhotometricDistort(p=0.5), v2.RandomZoomOut(fill=mean_fill, side_range=(1.0, 4.0), p=0.5),
                   v2.RandomIoUCrop(), v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(labels_getter=per_box_targets),
                   v2.Resize((s, s), antialias=True)]
        elif recipe == "scale-jitter":
            ops = [v2.ScaleJitter((s, s), scale_range=(0.3, 2.0), antialias=True),
                   v2.RandomCrop(s, pad_if_needed=True, fill=fill)]
        elif small:
            ops = [v2.Resize((s, s), antialias=True)]
            if pad:
                ops.append(v2.RandomCrop(s, padding=pad, fill=fill))
        else:
            ops = [v2.RandomResizedCrop(s, scale=scale, antialias=True)]
        if train and flip and recipe != "none":
            ops.append(v2.RandomHorizontalFlip())
        if boxes:  # clamp first: a resize can leave an edge a float step past the image, and sanitizing would drop it
            ops += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(labels_getter=per_box_targets)]
        self.geometric = v2.Compose(ops)
        self.match = MatchChannels(in_chans or len(mean))
        self.normalize = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        image, target = _unwrap(*self.geometric(*_wrap(self.match(image), target)))
        if "masks" in target:  # uint8 0/1 on the way in; padding filled them with IGNORE_INDEX
            target["masks"] = target["masks"] == 1
        return self.normalize(image), target


def per_box_targets(inputs) -> tuple[torch.Tensor, ...]:
    """The per-object tensors of a ``(image, target)`` sample that SanitizeBoundingBoxes drops
    with their boxes (:data:`PER_BOX_KEYS`; instance masks it finds itself)."""
    target = inputs[1]
    return tuple(target[k] for k in PER_BOX_KEYS if k in target)


def _wrap(image: torch.Tensor, target: dict):
    """The image and its target as ``tv_tensors``, which torchvision's v2 transforms move together."""
    from torchvision import tv_tensors

    target = dict(target)
    if "boxes" in target:
        target["boxes"] = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    if "mask" in target:
        target["mask"] = tv_tensors.Mask(target["mask"])
    if "masks" in target:
        target["masks"] = tv_tensors.Mask(target["masks"].to(torch.uint8))
    return tv_tensors.Image(image), target


def _unwrap(image, target: dict) -> tuple[torch.Tensor, dict]:
    plain = lambda t: t.as_subclass(torch.Tensor) if isinstance(t, torch.Tensor) else t
    return plain(image), {k: plain(v) for k, v in target.items()}


def resize_sample(image: torch.Tensor, target: dict, size: int) -> tuple[torch.Tensor, dict]:
    """``image`` resized to ``size x size`` (antialiased), its boxes and mask (nearest) with it."""
    return _unwrap(*v2.Resize((size, size), antialias=True)(*_wrap(image, target)))
