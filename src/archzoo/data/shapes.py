"""``shapes``: a seeded generator of coloured geometric objects on textured backgrounds.

Built in and needing no download, it serves every task from one source: an image with one
object is a classification sample, its tight box ``(x1, y1, x2, y2)`` checks that a class
activation map points at the object (the "pointing game", Zhang et al. 2016, arXiv:1608.00507),
and with several objects per image the boxes and instance masks are detection and segmentation
targets.

Eight classes that differ only in shape — colour, size, rotation, position and background are
drawn independently of the class, so a network must learn the outline: circle, ellipse,
triangle, square, star, cross, ring, crescent. Objects are antialiased (2x2 supersampling); the
background is one of four textures (blotches, stripes, checkers, noise) plus pixel noise, and
the object's colour is kept away from the background's mean colour.

Deterministic by seed: images are drawn in blocks of :data:`BLOCK`, block ``b`` of a stream
from ``numpy.random.default_rng([seed, stream, b])``, so image ``i`` is the same whatever
``n`` is asked for. The datasets of :func:`load_shapes_dataset` use stream 0 for ``"train"``
and stream 1 for ``"test"``: one object per image for classification, 1-4 for detection and
segmentation (which share their images).

Boxes are in pixels, ``x2``/``y2`` exclusive: pixel ``(row, col)`` is in the box iff
``x1 <= col < x2`` and ``y1 <= row < y2``. A mask pixel is on where the object covers at least
half of it and no later object covers it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import ImageDataset

CLASS_NAMES = ("circle", "ellipse", "triangle", "square", "star", "cross", "ring", "crescent")
SIZE = 32
BLOCK = 256
TRAIN_SIZE, TEST_SIZE = 10_000, 2_000
STREAMS = {"train": 0, "test": 1}
_TRIES = 24  # placement candidates per object in multi-object images


@dataclass
class Shapes:
    """``n`` generated images with up to ``K`` objects each (absent objects have label -1)."""

    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: torch.Tensor  # int64 [N, K]
    boxes: torch.Tensor  # float32 [N, K, 4], (x1, y1, x2, y2)
    masks: torch.Tensor  # bool [N, K, S, S]

    def __len__(self) -> int:
        return len(self.images)

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """The objects of image ``i`` without padding: ``labels [k]``, ``boxes [k, 4]``, ``masks [k, S, S]``."""
        keep = self.labels[i] >= 0
        return {"labels": self.labels[i][keep], "boxes": self.boxes[i][keep], "masks": self.masks[i][keep]}


@contextmanager
def _one_thread():
    """Rendering is many small element-wise ops; on a busy machine intra-op threads only add
    synchronisation (measured 2-15x slower with 2 threads on 2 shared cores), so use one."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------- the outlines


def _polygon(u: torch.Tensor, v: torch.Tensor, n: int, inner: float) -> torch.Tensor:
    """Inside a regular ``n``-gon (``inner = cos(pi/n)``) or ``n``-pointed star (smaller
    ``inner``) of circumradius 1: fold the angle into one half-sector and test against the edge
    from the outer vertex ``(1, 0)`` to the inner vertex at angle ``pi/n``."""
    sector = 2 * math.pi / n
    a = torch.remainder(torch.atan2(v, u), sector)
    a = torch.minimum(a, sector - a)
    rho = torch.hypot(u, v)
    px, py = rho * torch.cos(a), rho * torch.sin(a)
    qx, qy = inner * math.cos(math.pi / n) - 1.0, inner * math.sin(math.pi / n)
    return qx * py - qy * (px - 1.0) >= 0


def _outline(cls: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Membership of local coordinates ``(u, v)`` (object radius 1) in class ``cls``'s outline."""
    r2 = u * u + v * v
    name = CLASS_NAMES[cls]
    if name == "circle":
        return r2 <= 0.85
    if name == "ellipse":
        return u * u + (v / 0.45) ** 2 <= 1.0
    if name == "triangle":
        return _polygon(u, v, 3, math.cos(math.pi / 3))
    if name == "square":
        return _polygon(u, v, 4, math.cos(math.pi / 4))
    if name == "star":
        return _polygon(u, v, 5, 0.42)
    if name == "cross":
        au, av = u.abs(), v.abs()
        return ((au <= 0.95) & (av <= 0.3)) | ((au <= 0.3) & (av <= 0.95))
    if name == "ring":
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if name == "crescent":
        return (r2 <= 1.0) & ((u - 0.45) ** 2 + v * v >= 0.8**2)
    raise AssertionError(name)


def _coverage(cls: torch.Tensor, cx, cy, radius, angle, size: int) -> torch.Tensor:
    """Fraction of each pixel covered by each object, by 2x2 supersampling: float [M, S, S].
    Every outline lies within its radius of its centre, so only a ``w x w`` window around each
    object is evaluated (the whole image for large objects)."""
    m = len(cls)
    out = torch.zeros(m, size, size)
    if m == 0:
        return out
    t = (torch.arange(2 * size, dtype=torch.float32) + 0.5) / 2  # subpixel centres, in pixels
    for k in torch.unique(cls).tolist():
        sel = torch.nonzero(cls == k).flatten()
        w = min(size, math.ceil(2 * float(radius[sel].max())) + 2)
        ar = torch.arange(w)
        x0 = (cx[sel] - radius[sel]).floor().long().clamp(0, size - w)
        y0 = (cy[sel] - radius[sel]).floor().long().clamp(0, size - w)
        dx = t[2 * x0[:, None] + torch.arange(2 * w)][:, None, :] - cx[sel, None, None]
        dy = t[2 * y0[:, None] + torch.arange(2 * w)][:, :, None] - cy[sel, None, None]
        c, s, r = torch.cos(angle[sel])[:, None, None], torch.sin(angle[sel])[:, None, None], radius[sel][:, None, None]
        u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r
        inside = _outline(k, u, v).float()
        rows, cols = (y0[:, None] + ar)[:, :, None], (x0[:, None] + ar)[:, None, :]
        out[sel[:, None, None], rows, cols] = F.avg_pool2d(inside[:, None], 2)[:, 0]
    return out


# ---------------------------------------------------------------- backgrounds


def _backgrounds(rng: np.random.Generator, b: int, size: int) -> torch.Tensor:
    """``b`` textured backgrounds, float [B, 3, S, S] in about 0..255."""
    kind = rng.integers(0, 4, b)
    base = rng.uniform(20, 235, (b, 3)).astype(np.float32)
    other = np.clip(base + rng.normal(0, 45, (b, 3)), 0, 255).astype(np.float32)
    blotch = rng.normal(0, 30, (b, 3, 4, 4)).astype(np.float32)
    freq = rng.uniform(2, 6, b).astype(np.float32)
    theta = rng.uniform(0, math.pi, b).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, b).astype(np.float32)
    cell = rng.integers(3, 9, b)
    noise = rng.standard_normal((b, 3, size, size), dtype=np.float32)

    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    base_t, other_t = torch.from_numpy(base)[:, :, None, None], torch.from_numpy(other)[:, :, None, None]
    k = torch.from_numpy(kind)
    bg = base_t.expand(b, 3, size, size).clone()  # kind 3 ("noise") is the flat base plus strong noise
    i = torch.nonzero(k == 0).flatten()  # blotches: a 4x4 colour field, smoothly upsampled
    bg[i] += F.interpolate(torch.from_numpy(blotch[i.numpy()]), size=(size, size), mode="bilinear", align_corners=False)
    i = torch.nonzero(k == 1).flatten()  # stripes between two colours, any direction and frequency
    th, fr, ph = (torch.from_numpy(a[i.numpy()])[:, None, None] for a in (theta, freq, phase))
    mix = 0.5 + 0.5 * torch.sin(2 * math.pi * fr * (xx * torch.cos(th) + yy * torch.sin(th)) / size + ph)
    bg[i] += (other_t[i] - base_t[i]) * mix[:, None]
    i = torch.nonzero(k == 2).flatten()  # checkers of 3..8 pixel cells
    cells = torch.from_numpy(cell[i.numpy()])[:, None, None]
    mix = ((xx.long()[None] // cells + yy.long()[None] // cells) % 2).float()
    bg[i] += (other_t[i] - base_t[i]) * mix[:, None]
    return bg + torch.where(k == 3, 19.0, 5.0)[:, None, None, None] * torch.from_numpy(noise)


# ---------------------------------------------------------------- placing and drawing


def _place(rng: np.random.Generator, b: int, kmax: int, kmin: int, size: int, rmin: float, rmax: float):
    """Object count, radius, centre per slot; in multi-object images the objects' bounding
    circles do not overlap (a slot that finds no free place in ``_TRIES`` draws is left empty)."""
    count = rng.integers(kmin, kmax + 1, b)
    radius = rng.uniform(rmin, rmax, (b, kmax, _TRIES)) * size
    pos = rng.uniform(0, 1, (b, kmax, _TRIES, 2))
    centre = radius[..., None] + pos * (size - 2 * radius[..., None])
    valid = np.zeros((b, kmax), bool)
    r_out, c_out = radius[:, :, 0].copy(), centre[:, :, 0].copy()
    for i in range(b):
        placed: list[tuple[float, float, float]] = []
        for k in range(count[i]):
            for t in range(_TRIES):
                r, (x, y) = radius[i, k, t], centre[i, k, t]
                if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 1) ** 2 for px, py, pr in placed):
                    placed.append((x, y, r))
                    valid[i, k], r_out[i, k], c_out[i, k] = True, r, (x, y)
                    break
    return valid, r_out, c_out


def _block(seed: int, stream: int, block: int, size: int, kmin: int, kmax: int, classes: int) -> Shapes:
    rng = np.random.default_rng([seed, stream, block])
    b = BLOCK
    bg = _backgrounds(rng, b, size)
    rmin, rmax = (0.24, 0.46) if kmax == 1 else (0.10, 0.24)
    valid, radius, centre = _place(rng, b, kmax, kmin, size, rmin, rmax)
    cls = rng.integers(0, classes, (b, kmax))
    angle = rng.uniform(0, 2 * math.pi, (b, kmax))
    colour = rng.uniform(0, 255, (b, kmax, 3))
    shade = rng.uniform(-0.25, 0.25, (b, kmax, 2))
    # keep the object's colour far from the background's mean: where too close, push every
    # channel to the far end of the range from the background
    bg_mean = bg.mean((2, 3)).numpy()[:, None, :]
    close = np.linalg.norm(colour - bg_mean, axis=-1) < 110
    far = np.where(bg_mean < 128, rng.uniform(170, 255, colour.shape), rng.uniform(0, 85, colour.shape))
    colour = np.where(close[..., None], far, colour)

    flat = lambda a: torch.as_tensor(a.reshape(b * kmax, *a.shape[2:]), dtype=torch.float32)
    cls_t = torch.as_tensor(cls.reshape(-1))
    cover = _coverage(cls_t, flat(centre[..., 0]), flat(centre[..., 1]), flat(radius), flat(angle), size)
    cover = cover.view(b, kmax, size, size) * torch.as_tensor(valid, dtype=torch.float32)[:, :, None, None]
    # a gentle linear shading across each object, so it is not one flat colour
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    sh = torch.as_tensor(shade, dtype=torch.float32)
    light = 1 + sh[..., 0, None, None] * xx + sh[..., 1, None, None] * yy  # [B, K, S, S]
    img = bg
    col = torch.as_tensor(colour, dtype=torch.float32)
    for k in range(kmax):
        a = cover[:, k, None]
        img = img * (1 - a) + col[:, k, :, None, None] * light[:, k, None] * a
    images = img.round().clamp(0, 255).to(torch.uint8)

    masks = cover >= 0.5
    later = torch.flip(torch.cumsum(torch.flip(masks.int(), [1]), 1), [1]) - masks.int()  # objects drawn after k
    masks &= later == 0
    labels = torch.where(torch.as_tensor(valid) & masks.flatten(2).any(-1), cls_t.view(b, kmax), -1)
    masks &= (labels >= 0)[:, :, None, None]
    return Shapes(images, labels, _mask_boxes(masks), masks)


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(x1, y1, x2, y2)`` (x2, y2 exclusive) of boolean masks ``[..., S, S]``; zeros for empty masks."""
    s = masks.shape[-1]
    cols, rows = masks.any(-2), masks.any(-1)
    ar = torch.arange(s)
    first = lambda m: torch.where(m, ar, s).amin(-1)
    last = lambda m: torch.where(m, ar + 1, 0).amax(-1)
    boxes = torch.stack([first(cols), first(rows), last(cols), last(rows)], -1).float()
    return torch.where(masks.flatten(-2).any(-1)[..., None], boxes, 0.0)


def generate(
    n: int,
    size: int = SIZE,
    seed: int = 0,
    objects: int | tuple[int, int] = 1,
    stream: int | str = "train",
    classes: int = len(CLASS_NAMES),
) -> Shapes:
    """``n`` images of ``size x size`` with ``objects`` (a count or a ``(min, max)`` range)
    objects each, drawn from the first ``classes`` classes of :data:`CLASS_NAMES`."""
    kmin, kmax = (objects, objects) if isinstance(objects, int) else objects
    if not 1 <= kmin <= kmax:
        raise ValueError(f"objects must be >= 1 (or a range 1 <= min <= max), got {objects!r}")
    if not 1 <= classes <= len(CLASS_NAMES):
        raise ValueError(f"classes must be in 1..{len(CLASS_NAMES)}, got {classes}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    stream = STREAMS[stream] if isinstance(stream, str) else int(stream)
    with _one_thread():
        parts = [_block(seed, stream, blk, size, kmin, kmax, classes) for blk in range(-(-n // BLOCK))]
    if not parts:
        return Shapes(torch.empty(0, 3, size, size, dtype=torch.uint8), torch.empty(0, kmax, dtype=torch.int64),
                      torch.empty(0, kmax, 4), torch.empty(0, kmax, size, size, dtype=torch.bool))
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])[:n]
    return Shapes(cat("images"), cat("labels"), cat("boxes"), cat("masks"))


def sample(index: int, size: int = SIZE, seed: int = 0, objects: int | tuple[int, int] = 1,
           stream: int | str = "train", classes: int = len(CLASS_NAMES)) -> dict[str, torch.Tensor]:
    """Image ``index`` of :func:`generate`'s sequence (same arguments) with its targets:
    ``image [3, S, S]``, ``labels [k]``, ``boxes [k, 4]``, ``masks [k, S, S]``."""
    kmin, kmax = (objects, objects) if isinstance(objects, int) else objects
    stream = STREAMS[stream] if isinstance(stream, str) else int(stream)
    with _one_thread():
        blk = _block(seed, stream, index // BLOCK, size, kmin, kmax, classes)
    return {"image": blk.images[index % BLOCK], **blk.target(index % BLOCK)}


DENSE_OBJECTS = (1, 4)  # objects per image of the detection and segmentation sets
DENSE_SIZES = {"train": 4_000, "test": 1_000}


@lru_cache(maxsize=4)
def _cached(subset: str, size: int, objects: tuple[int, int], n: int) -> Shapes:
    return generate(n, size=size, objects=objects, stream=subset)


def semantic_masks(data: Shapes) -> torch.Tensor:
    """uint8 ``[N, S, S]``: 0 for the background, ``1 + label`` where an object covers the pixel."""
    sem = torch.zeros(data.masks.shape[0], *data.masks.shape[2:], dtype=torch.uint8)
    for k in range(data.masks.shape[1]):
        sem = torch.where(data.masks[:, k], (data.labels[:, k] + 1).to(torch.uint8)[:, None, None], sem)
    return sem


def load_shapes_dataset(subset: str = "train", size: int | None = None, task: str = "classification",
                        n: int | None = None, masks: bool = False) -> ImageDataset:
    """A ``shapes`` set for ``task`` (``load_dataset`` names: ``shapes``, ``shapes-det``,
    ``shapes-seg``), RGB images of ``size`` (default 32) pixels.

    * classification: one object per image, 10,000 ``"train"`` / 2,000 ``"test"`` images; the
      object's box and mask ride along as targets ``box`` ``[4]`` and ``object_mask`` ``[S, S]``.
    * detection: 1-4 objects per image, 4,000 / 1,000 images; ``boxes`` are the tight boxes of
      the objects' masks (``x2``/``y2`` exclusive), ``labels`` index :data:`CLASS_NAMES`; with
      ``masks`` (for a detector that predicts instance masks) also ``masks``, bool ``[k, S, S]``,
      one per box (the pixels where its object is visible).
    * segmentation: the same images as detection; ``mask`` is 0 for the background and
      ``1 + label`` on each object, so ``class_names`` is ``["background", *CLASS_NAMES]``.

    ``n`` takes the first ``n`` images instead (the same images, whatever ``n`` is)."""
    if subset not in STREAMS:
        raise ValueError(f"shapes has subsets 'train' and 'test', got {subset!r}")
    size = size or SIZE
    if task == "classification":
        data = _cached(subset, size, (1, 1), n or (TRAIN_SIZE if subset == "train" else TEST_SIZE))
        targets = {"box": data.boxes[:, 0].clone(), "object_mask": data.masks[:, 0].clone()}  # callers may edit
        return ImageDataset(list(CLASS_NAMES), data.labels[:, 0].clone(), images=data.images.clone(), targets=targets)
    data = _cached(subset, size, DENSE_OBJECTS, n or DENSE_SIZES[subset])
    if task == "detection":
        targets = {"boxes": data.boxes.clone(), "labels": data.labels.clone()}
        if masks:  # [N, K, S, S]: per object, as boxes and labels are (padding rows are empty)
            targets["masks"] = data.masks.clone()
        return ImageDataset(list(CLASS_NAMES), images=data.images.clone(), task="detection", targets=targets)
    if task == "segmentation":
        return ImageDataset(["background", *CLASS_NAMES], images=data.images.clone(), task="segmentation",
                            targets={"mask": semantic_masks(data)})
    raise ValueError(f"task must be classification, detection or segmentation, got {task!r}")
