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
# segmentation recipes of DenseTransform: they turn and warp the image, which boxes cannot follow exactly
SEGMENTATION_AUGMENTS = ("unet", "pspnet")
PER_BOX_KEYS = ("labels", "difficult")  # per-object target tensors that go with their boxes
BILINEAR = v2.InterpolationMode.BILINEAR  # images turn bilinearly; masks always take the nearest value


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
    if augment in SEGMENTATION_AUGMENTS:
        raise ValueError(f"augment {augment!r} is a segmentation recipe (it moves masks); a classifier takes one of "
                         f"{AUGMENTS}")
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

    The segmentation recipes of :data:`SEGMENTATION_AUGMENTS` (masks follow with nearest
    interpolation, and pixels brought in from outside the image are ``IGNORE_INDEX``):

    * ``"unet"``: U-Net's (Ronneberger et al. 2015, arXiv:1505.04597, section 3.1: shift, rotation,
      elastic deformation, grey-value variation), for few training images: resize to ``s x s``,
      horizontal and vertical flips, a random multiple of 90 degrees (:class:`RandomRotate90`),
      a small rotation (up to 15 degrees), scale 0.8..1.25 and shift up to 10% (one affine map),
      the paper's elastic deformation (:class:`UNetElastic`) and brightness and contrast up to 10%.
    * ``"pspnet"``: PSPNet's (Zhao et al. 2017, arXiv:1612.01105, section 4.1): random resize to
      0.5..2x of ``s`` (aspect kept), rotation up to 10 degrees, a random ``s x s`` crop (padded
      where the image is smaller), a flip and, half the time, a Gaussian blur.

    ``crop`` (training only): after the recipe, a random ``crop x crop`` window of the ``s x s``
    picture (padded with ``IGNORE_INDEX`` / 0 where it is smaller). The network then trains on
    pieces at the scale it will be evaluated at, whole ``s x s`` images (a U-Net on 256-pixel
    crops of 512-pixel slices, as mmsegmentation's ``crop_size``).
    """

    def __init__(self, train: bool, input_size: int, mean: Sequence[float], std: Sequence[float], *,
                 in_chans: int | None = None, small: bool | None = None, pad: int = 4, flip: bool = True,
                 scale: tuple[float, float] = (0.08, 1.0), boxes: bool = False, recipe: str = "basic",
                 crop: int | None = None) -> None:
        from torchvision import tv_tensors

        from .dataset import IGNORE_INDEX

        if recipe not in ("basic", "none", *DETECTION_AUGMENTS, *SEGMENTATION_AUGMENTS):
            raise ValueError(f"recipe must be basic, none or one of {DETECTION_AUGMENTS + SEGMENTATION_AUGMENTS}, "
                             f"got {recipe!r}")
        if recipe in DETECTION_AUGMENTS and not boxes:
            raise ValueError(f"the {recipe!r} recipe is for detection (boxes=True)")
        if recipe in SEGMENTATION_AUGMENTS and boxes:
            raise ValueError(f"the {recipe!r} recipe is for segmentation: its turns and warps move masks, not boxes")
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
        elif recipe == "unet":
            flips = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()] if flip else []
            ops = [v2.Resize((s, s), antialias=True), *flips, RandomRotate90(),
                   v2.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.8, 1.25), interpolation=BILINEAR,
                                   fill=fill),
                   UNetElastic(fill=fill), v2.ColorJitter(brightness=0.1, contrast=0.1)]
        elif recipe == "pspnet":
            ops = [v2.ScaleJitter((s, s), scale_range=(0.5, 2.0), antialias=True),
                   v2.RandomRotation(10, interpolation=BILINEAR, fill=fill),
                   v2.RandomCrop(s, pad_if_needed=True, fill=fill), *([v2.RandomHorizontalFlip()] if flip else []),
                   v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 2.0))], p=0.5)]
        elif small:
            ops = [v2.Resize((s, s), antialias=True)]
            if pad:
                ops.append(v2.RandomCrop(s, padding=pad, fill=fill))
        else:
            ops = [v2.RandomResizedCrop(s, scale=scale, antialias=True)]
        if train and flip and recipe not in ("none", *SEGMENTATION_AUGMENTS):  # those place their own flips
            ops.append(v2.RandomHorizontalFlip())
        if train and crop:  # a random crop of the augmented picture, at its scale (padded where it is smaller)
            ops.append(v2.RandomCrop(int(crop), pad_if_needed=True, fill=fill))
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


class RandomRotate90(v2.Transform):
    """Turn the image and its masks by a random multiple of 90 degrees: exact (no interpolation);
    a non-square image swaps its sides. Boxes are refused (the segmentation recipes only)."""

    def make_params(self, flat_inputs) -> dict:
        return {"k": int(torch.randint(4, ()))}

    def transform(self, inpt, params: dict):
        from torchvision import tv_tensors

        if isinstance(inpt, tv_tensors.BoundingBoxes):
            raise TypeError("RandomRotate90 turns images and masks, not boxes")
        if not isinstance(inpt, torch.Tensor) or params["k"] == 0:
            return inpt
        out = torch.rot90(inpt.as_subclass(torch.Tensor), params["k"], dims=(-2, -1))
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class UNetElastic(v2.ElasticTransform):
    """U-Net's elastic deformation (Ronneberger et al. 2015, arXiv:1505.04597, section 3.1): random
    displacement vectors on a coarse ``grid x grid`` grid (3 x 3), Gaussian with a standard deviation
    of 10 pixels on the paper's 512-pixel images (``std``: 10/512 of the shorter side here), and
    per-pixel displacements by bicubic interpolation of the grid. torchvision's elastic kernels warp
    the image bilinearly and masks with nearest neighbours; ``fill`` fills what comes from outside."""

    def __init__(self, grid: int = 3, std: float = 10 / 512, fill=0) -> None:
        super().__init__(fill=fill)
        self.grid, self.std = grid, std

    def make_params(self, flat_inputs) -> dict:
        import torch.nn.functional as F

        h, w = v2.query_size(flat_inputs)
        coarse = torch.randn(1, 2, self.grid, self.grid) * (self.std * min(h, w))  # pixels
        d = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]
        # torchvision's displacement is in grid units: the image spans 2, so a pixel is 2/w across, 2/h down
        return {"displacement": torch.stack([d[0] * (2 / w), d[1] * (2 / h)], -1)[None]}


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
