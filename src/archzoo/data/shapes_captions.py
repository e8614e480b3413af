"""``shapes-cap``: seeded pictures of two coloured shapes with captions from a small grammar.

Each image holds two objects, each one of :data:`COLOURS` and one of :data:`SHAPES`, placed so
that one relation of :data:`RELATIONS` holds unambiguously between them (their centres differ
along one axis by at least 24% of the side and along the other by at most 60% of that). Every
image has two reference captions, the relation read from either object::

    a red circle left of a blue square
    a blue square right of a red circle

Held-out compositions: the colour-shape pairs of :data:`HELD_OUT` (one per colour and one per
shape) never appear in a ``"train"`` image; half of the ``"test"`` images contain one (target
``novel`` is 1 there), so "exact match on novel images" measures whether a captioner composes
colour and shape words it has only seen apart. Every word of the grammar occurs in training.

Objects are drawn as in :mod:`.shapes` (antialiased outlines, a gentle shading, colours
jittered by up to 25 per channel) on its textured backgrounds turned grey and kept in the
mid-tones, so colour names refer to the objects only. Deterministic by seed: block ``b`` of a
stream comes from ``numpy.random.default_rng([seed, 7, stream, b])``, so image ``i`` is the same
whatever ``n`` is asked for.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from .shapes import BLOCK, CLASS_NAMES, _backgrounds, _coverage, _one_thread

COLOURS = {"red": (220, 45, 40), "green": (40, 190, 60), "blue": (45, 85, 235), "yellow": (240, 215, 40),
           "purple": (150, 55, 200)}
SHAPES = ("circle", "square", "triangle", "star", "cross")
RELATIONS = ("left of", "right of", "above", "below")
CONVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# one pair per colour and per shape: a Latin diagonal of the colour x shape table
HELD_OUT = frozenset({("red", "square"), ("green", "triangle"), ("blue", "star"), ("yellow", "cross"),
                      ("purple", "circle")})
SIZE = 64
SIZES = {"train": 4_000, "test": 1_000}
STREAMS = {"train": 0, "test": 1}
_SEEN = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELD_OUT]
_NOVEL = sorted(HELD_OUT)


def caption(obj_a: tuple[str, str], relation: str, obj_b: tuple[str, str]) -> str:
    """``"a red circle left of a blue square"`` for ``(("red", "circle"), "left of", ("blue", "square"))``."""
    return f"a {obj_a[0]} {obj_a[1]} {relation} a {obj_b[0]} {obj_b[1]}"


def _pairs(rng: np.random.Generator, novel: bool) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two different colour-shape pairs: both seen ones, or (``novel``) one held out and one seen."""
    first = _NOVEL[rng.integers(len(_NOVEL))] if novel else _SEEN[rng.integers(len(_SEEN))]
    while True:
        second = _SEEN[rng.integers(len(_SEEN))]
        if second != first:
            break
    return (first, second) if rng.random() < 0.5 else (second, first)


def _layout(rng: np.random.Generator, size: int):
    """Centres of the objects ``(x, y)`` in pixels, their radii, and the relation of the first
    object to the second (in image coordinates: y grows downwards)."""
    axis = rng.integers(2)  # 0: horizontal relation, 1: vertical
    while True:
        along = rng.uniform(0.15, 0.38), rng.uniform(0.62, 0.85)
        across = rng.uniform(0.25, 0.75, 2)
        if abs(across[0] - across[1]) <= 0.6 * (along[1] - along[0]):
            break
    order = rng.integers(2)  # which object is on the low side of the axis
    lo, hi = (0, 1) if order == 0 else (1, 0)
    pos = np.zeros((2, 2))
    pos[lo, axis], pos[hi, axis] = along
    pos[:, 1 - axis] = across
    radius = rng.uniform(0.09, 0.12, 2) * size
    if axis == 0:
        relation = "left of" if order == 0 else "right of"
    else:
        relation = "above" if order == 0 else "below"
    return pos * size, radius, relation


def _block(seed: int, stream: int, block: int, size: int, novel_share: float):
    rng = np.random.default_rng([seed, 7, stream, block])
    b = BLOCK
    bg = _backgrounds(rng, b, size)
    grey = bg.mean(1, keepdim=True)
    lo, hi = grey.amin((2, 3), keepdim=True), grey.amax((2, 3), keepdim=True)
    bg = (70 + 110 * (grey - lo) / (hi - lo).clamp(min=1)).expand(b, 3, size, size)  # mid-tone grey texture
    objects, relations, novel = [], [], np.zeros(b, dtype=bool)
    centres, radii = np.zeros((b, 2, 2)), np.zeros((b, 2))
    for i in range(b):
        novel[i] = rng.random() < novel_share
        objects.append(_pairs(rng, bool(novel[i])))
        centres[i], radii[i], rel = _layout(rng, size)
        relations.append(rel)
    angle = rng.uniform(0, 2 * math.pi, (b, 2))
    jitter = rng.uniform(-25, 25, (b, 2, 3))
    shade = rng.uniform(-0.2, 0.2, (b, 2, 2))
    cls = torch.tensor([[CLASS_NAMES.index(s) for _, s in pair] for pair in objects]).view(-1)
    flat = lambda a: torch.as_tensor(a.reshape(b * 2), dtype=torch.float32)
    cover = _coverage(cls, flat(centres[..., 0]), flat(centres[..., 1]), flat(radii), flat(angle), size).view(b, 2, size, size)
    colour = torch.tensor([[COLOURS[c] for c, _ in pair] for pair in objects], dtype=torch.float32)
    colour = (colour + torch.as_tensor(jitter, dtype=torch.float32)).clamp(0, 255)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    sh = torch.as_tensor(shade, dtype=torch.float32)
    light = 1 + sh[..., 0, None, None] * xx + sh[..., 1, None, None] * yy
    img = bg
    for k in range(2):
        a = cover[:, k, None]
        img = img * (1 - a) + colour[:, k, :, None, None] * light[:, k, None] * a
    images = img.round().clamp(0, 255).to(torch.uint8)
    captions = [(caption(o[0], r, o[1]), caption(o[1], CONVERSE[r], o[0])) for o, r in zip(objects, relations)]
    return images, captions, torch.as_tensor(novel)


def generate(n: int, size: int = SIZE, seed: int = 0, stream: str = "train") -> tuple[torch.Tensor, list, torch.Tensor]:
    """``(images uint8 [n, 3, S, S], captions [(caption, converse caption)] * n, novel bool [n])``.
    The ``"train"`` stream never draws a :data:`HELD_OUT` pair; ``"test"`` puts one in half its images."""
    if stream not in STREAMS:
        raise ValueError(f"shapes-cap has subsets 'train' and 'test', got {stream!r}")
    if size < 32:
        raise ValueError(f"shapes-cap images must be at least 32 pixels, got {size}")
    share = 0.0 if stream == "train" else 0.5
    with _one_thread():
        parts = [_block(seed, STREAMS[stream], blk, size, share) for blk in range(-(-n // BLOCK))]
    images = torch.cat([p[0] for p in parts])[:n] if parts else torch.empty(0, 3, size, size, dtype=torch.uint8)
    captions = [c for p in parts for c in p[1]][:n]
    novel = torch.cat([p[2] for p in parts])[:n] if parts else torch.empty(0, dtype=torch.bool)
    return images, captions, novel


@lru_cache(maxsize=4)
def _cached(subset: str, size: int, n: int):
    return generate(n, size=size, stream=subset)


def load_shapes_captions(subset: str = "train", size: int | None = None, n: int | None = None):
    """The ``shapes-cap`` set of ``subset`` (``"train"``: 4,000 images, ``"test"``: 1,000) as a
    captioning :class:`~archzoo.data.ImageDataset` (see :mod:`.captions`), images of ``size``
    (default 64) pixels; ``n``: the first ``n`` images instead."""
    from .captions import captions_dataset

    if subset not in STREAMS:
        raise ValueError(f"shapes-cap has subsets 'train' and 'test', got {subset!r}")
    images, caps, novel = _cached(subset, size or SIZE, n or SIZES[subset])
    return captions_dataset(images.clone(), [list(c) for c in caps], extra={"novel": novel.clone().to(torch.int64)})
