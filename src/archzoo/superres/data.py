"""Photos for super-resolution, the degradation, the Y channel, PSNR/SSIM and whole-image inference.

* Data (:func:`load_photos`): any folder of photos (searched recursively; other files ignored),
  or the built-in ``photos``: natural photos that ship inside scikit-image's wheel
  (``skimage/data``, nothing is downloaded), with a fixed held-out ``test`` set. Items are the
  photos' luminance ``Y`` (uint8 ``[1, H, W]``), the channel the paper trains and scores on.
  One epoch cuts ``patches_per_image`` random patches from every training photo.
* Degradation (:func:`degrade`): the usual bicubic one, HR cropped to a multiple of the scale,
  then shrunk by bicubic interpolation with antialiasing (as MATLAB's ``imresize``) and
  rounded to 8 bits.
* Y: ITU-R BT.601 studio range, as MATLAB's ``rgb2ycbcr`` (``Y = 16 + 65.481 R + 128.553 G +
  24.966 B`` for ``R, G, B`` in [0, 1]); a grey image's Y is ``16 + 219 g``.
* Scores (:func:`psnr_ssim`): scikit-image's ``peak_signal_noise_ratio`` and
  ``structural_similarity`` (Gaussian window, sigma 1.5, as Wang et al.'s reference code) on Y
  in [0, 1], after shaving ``scale`` pixels off every border.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validate import UserError, shown

# natural photos in scikit-image's wheel; the test set is never trained on
PHOTOS_TRAIN = ("astronaut.png", "brick.png", "cell.png", "coins.png", "grass.png", "gravel.png",
                "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg",
                "text.png")
PHOTOS_TEST = ("camera.png", "chelsea.png", "coffee.png")
PATCHES_PER_IMAGE = None  # default: enough for ~256 patches an epoch (see load_photos)
EPOCH_PATCHES = 256
TILE = 96  # whole-image inference: LR tiles of this side ...
TILE_OVERLAP = 16  # ... overlapping by this much (the seams' context), so memory stays bounded


def skimage_photo_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


# --------------------------------------------------------------------------- colour and degradation


def to_y(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[1 or 3, H, W]`` -> uint8 ``[1, H, W]``: the BT.601 luminance (module doc)."""
    x = image.float() / 255
    if x.shape[0] == 3:
        y = 16 + 65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2]
    else:
        y = 16 + 219 * x[0]
    return y.round().clamp(0, 255).to(torch.uint8)[None]


def degrade(hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hr cropped to a multiple of scale, lr)`` from float ``[B, C, H, W]`` in [0, 1]: bicubic
    shrinking with antialiasing, rounded to 8 bits."""
    h, w = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
    hr = hr[..., :h, :w]
    lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return hr, (lr.clamp(0, 1) * 255).round() / 255


def bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline: bicubic upsampling by ``scale``, clamped to [0, 1]."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def psnr_ssim(pred: torch.Tensor, truth: torch.Tensor, shave: int) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one image ``[1, H, W]`` or ``[H, W]`` in [0, 1] against the truth,
    ``shave`` border pixels left out, the prediction rounded to 8 bits first (as saved)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    p = (pred.squeeze().double().clamp(0, 1) * 255).round().numpy() / 255
    t = truth.squeeze().double().numpy()
    if shave:
        p, t = p[shave:-shave, shave:-shave], t[shave:-shave, shave:-shave]
    if min(p.shape) < 7:
        raise UserError(f"an image of {t.shape[0] + 2 * shave}x{t.shape[1] + 2 * shave} pixels is too small to score: "
                        f"SSIM needs 7x7 pixels after shaving {shave} from each border")
    psnr = peak_signal_noise_ratio(t, p, data_range=1.0)
    ssim = structural_similarity(t, p, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return float(min(psnr, 100.0)), float(ssim)


@torch.no_grad()
def upscale(model: nn.Module, lr: torch.Tensor, scale: int, tile: int = TILE, overlap: int = TILE_OVERLAP) -> torch.Tensor:
    """``model`` on a whole LR image ``[1, C, h, w]`` in [0, 1] -> ``[1, C, scale h, scale w]`` in
    [0, 1]. Images larger than ``tile`` run in overlapping tiles (each keeps ``overlap`` LR pixels
    of context on every inner side), so memory stays bounded whatever the photo's size."""
    _, c, h, w = lr.shape
    if h <= tile + overlap and w <= tile + overlap:
        return model(lr).float().clamp(0, 1)
    out = torch.zeros(1, c, h * scale, w * scale, device=lr.device)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            t1, l1 = min(top + tile + overlap, h), min(left + tile + overlap, w)
            sr = model(lr[..., t0:t1, l0:l1]).float()
            bh, bw = min(tile, h - top), min(tile, w - left)
            dt, dl = (top - t0) * scale, (left - l0) * scale
            out[..., top * scale:(top + bh) * scale, left * scale:(left + bw) * scale] = \
                sr[..., dt:dt + bh * scale, dl:dl + bw * scale]
    return out.clamp(0, 1)


# --------------------------------------------------------------------------- photos as a dataset


def read_photo(path: str | os.PathLike) -> torch.Tensor:
    """uint8 ``[1 or 3, H, W]`` of an image file (transparency composited onto white); a file that
    is not a readable image is a :class:`UserError` naming it."""
    from ..data.folder import BadImageError, decode_image

    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{shown(path)}: no such image file")
    try:
        a = decode_image(p, channels=None)
    except BadImageError as e:
        raise UserError(f"{shown(path)} is not a readable image: {e.reason}") from None
    return torch.from_numpy(np.array(a.transpose(2, 0, 1)))  # a copy: the decoder's array may be read-only


class PhotoSet(torch.utils.data.Dataset):
    """Photos as Y images: ``ds[i]`` is ``(uint8 [1, H, W], {})`` of ``files[items[i]]`` (a photo
    appears once per patch an epoch cuts from it). ``sizes``: ``(H, W)`` of every file, read from
    the headers. Quacks like :class:`archzoo.data.ImageDataset` where the engine needs it."""

    task = "super_resolution"
    images = None  # decoded lazily (photos differ in size)

    def __init__(self, files: list[str], sizes: list[tuple[int, int]], items: list[int] | None = None):
        self.files, self.sizes = list(files), list(sizes)
        self.items = list(range(len(files))) if items is None else list(items)
        self.class_names: list[str] = []
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    def decode(self, k: int) -> torch.Tensor:
        if k not in self._cache:  # a few dozen photos: keep their Y planes (1 byte a pixel)
            self._cache[k] = to_y(read_photo(self.files[k]))
        return self._cache[k]

    def __getitem__(self, i: int):
        return self.decode(self.items[i]), {}

    @property
    def channels(self) -> int:
        return 1

    @property
    def num_classes(self) -> int:
        return 0

    def subset(self, indices) -> PhotoSet:
        idx = torch.as_tensor(indices, dtype=torch.int64).tolist()
        return PhotoSet(self.files, self.sizes, [self.items[i] for i in idx])

    def repeated(self, times: int) -> PhotoSet:
        """Every photo ``times`` times (patches an epoch cuts from it)."""
        return PhotoSet(self.files, self.sizes, [k for k in self.items for _ in range(times)])

    def smallest(self) -> tuple[str, tuple[int, int]]:
        """``(file, (H, W))`` of the photo with the shortest side."""
        k = min(set(self.items), key=lambda k: min(self.sizes[k]))
        return self.files[k], self.sizes[k]

    def __repr__(self) -> str:
        return f"PhotoSet(photos={len(set(self.items))}, items={len(self)})"


def _header_size(path: str, bad: list, skip_bad: bool) -> tuple[int, int] | None:
    from ..data.folder import BadImageError, _open

    try:
        img = _open(path)
    except BadImageError as e:
        if not skip_bad:
            raise UserError(f"{shown(path)} is not a readable image: {e.reason} (--skip-bad skips such files)") from None
        bad.append((str(path), e.reason))
        return None
    w, h = img.size
    img.close()
    return h, w


def photo_files(spec: str | os.PathLike, subset: str = "train", skip_bad: bool = False):
    """``(files, sizes, bad)`` of the built-in ``photos`` (``subset`` ``train`` or ``test``) or of
    every image file under a folder (searched recursively; other files ignored)."""
    from ..data.folder import IMAGE_EXTENSIONS, _walk

    bad: list[tuple[str, str]] = []
    if str(spec) == "photos":
        names = PHOTOS_TEST if subset.lower() in ("test", "val", "valid", "validation") else PHOTOS_TRAIN
        root = skimage_photo_dir()
        files = [str(root / n) for n in names]
        missing = [n for n, f in zip(names, files) if not Path(f).is_file()]
        if missing:
            raise UserError(f"photos: scikit-image's sample photos {missing} are missing from {root} (a trimmed "
                            "install?); give a folder of photos with --data")
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserError(f"data {shown(spec)!r} is neither the built-in 'photos' nor an existing folder")
        if path.is_file():
            raise UserError(f"data {shown(spec)} is a file; give the folder that holds the photos (or 'photos')")
        files = [e.path for e in _walk(path, (), bad, skip_bad) if e.name.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise UserError(f"{shown(spec)} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    sizes = [_header_size(f, bad, skip_bad) for f in files]
    kept = [(f, s) for f, s in zip(files, sizes) if s is not None]
    if not kept:
        raise UserError(f"{shown(spec)}: no readable image")
    return [f for f, _ in kept], [s for _, s in kept], bad


def load_photos(spec: str | os.PathLike, *, val_split: float = 0.1, seed: int = 0, subset: str = "train",
                skip_bad: bool = False, patches_per_image: int | None = PATCHES_PER_IMAGE):
    """:class:`~archzoo.data.DatasetSplits` of photos for super-resolution: a seeded
    ``val_split`` of the photos held out (at least one when the fraction is positive and there
    are two photos or more), the rest repeated ``patches_per_image`` times (default: enough for
    about 256 patches an epoch)."""
    from ..data import DatasetSplits

    files, sizes, bad = photo_files(spec, subset, skip_bad)
    all_photos = PhotoSet(files, sizes)
    n = len(files)
    n_val = 0
    if val_split > 0 and n >= 2:
        n_val = min(max(1, round(val_split * n)), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
    train = all_photos.subset(train_idx)
    times = patches_per_image or max(1, math.ceil(EPOCH_PATCHES / len(train_idx)))
    val = all_photos.subset(val_idx) if n_val else None
    where = "scikit-image's sample photos" if str(spec) == "photos" else shown(spec)
    description = (f"{n} photos from {where} ({subset}): {len(train_idx)} for training ({times} patches each an "
                   f"epoch), {n_val} held out")
    return DatasetSplits(train=train.repeated(times), val=val, class_names=[], bad_files=bad, description=description)


def check_patch_fits(ds: PhotoSet | None, hr_patch: int, lr_size: int, scale: int, what: str) -> None:
    """Every photo of ``ds`` must hold an HR patch of ``hr_patch`` pixels: else a :class:`UserError`
    naming the smallest."""
    if ds is None or not len(ds):
        return
    f, (h, w) = ds.smallest()
    if min(h, w) < hr_patch:
        raise UserError(f"{shown(f)} ({what}) is {h}x{w} pixels, smaller than the {hr_patch}x{hr_patch} high-resolution "
                        f"patch ({lr_size}-pixel input x scale {scale}); lower --image-size (the input patch side) or "
                        "leave the photo out")


def check_patches(model: nn.Module, train: PhotoSet | None, val: PhotoSet | None, image_size: int | None) -> None:
    """The training and validation photos all hold the HR patch ``model`` trains on (input side
    ``image_size``, default the card's, times ``model.scale``)."""
    lr = image_size or model.card.input_size[-1]
    for ds, what in ((train, "a training photo"), (val, "a validation photo")):
        if isinstance(ds, PhotoSet):
            check_patch_fits(ds, lr * model.scale, lr, model.scale, what)
