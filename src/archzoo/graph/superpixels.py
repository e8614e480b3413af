"""Images as graphs: SLIC superpixels -> a region adjacency graph (PyTorch Geometric ``Data``).

Following Knyazev et al. 2019 (arXiv:1905.02161) and Dwivedi et al. 2020 ("Benchmarking Graph
Neural Networks", arXiv:2003.00982): an image is cut into superpixels by SLIC (Achanta et al.
2012, ``skimage.segmentation.slic``); each superpixel is a node whose features are its mean
colour (each channel, in [0, 1]), its centroid ``(y, x)`` (in [0, 1] of the image's height and
width) and its relative size (pixel count over the mean count); two nodes are joined where their
superpixels touch (4-neighbourhood: the region adjacency graph) or, with ``knn=k``, each node to
its ``k`` nearest neighbours in position, as Dwivedi et al. build them. Every edge carries one
feature, the Gaussian kernel of its nodes' distance in position and colour,
``exp(-|p_i - p_j|^2 / s_p^2 - |c_i - c_j|^2 / s_c^2)`` (``s``: the graph's mean distances),
which GCN uses as edge weight and GAT and the gated GCN as edge feature. Edges are stored in
both directions.

:class:`SuperpixelGraphs` works on 8-bit images (a float image in [0, 1] is rounded to 256
levels first) and is deterministic (SLIC has no randomness; the same pixels give the same graph
bit for bit), and it caches: graphs are kept in one process-wide table keyed by the
settings and a hash of the pixels, so every epoch after the first, and every model trained on
the same images (the benchmark's GCN, GAT and gated GCN), reuses them.
:meth:`SuperpixelGraphs.precompute` fills the table with several processes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from typing import TYPE_CHECKING

from ..validate import UserError
from .pyg import pyg

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

MIN_PIXELS = 4  # the fewest pixels a requested superpixel may average (an image of 32x32 takes up to 256)
CACHE_SIZE = 200_000  # graphs kept in the process-wide cache (a CIFAR graph is ~10 KB)

_CACHE: OrderedDict = OrderedDict()


@dataclass(frozen=True)
class SuperpixelGraphs:
    """Convert images ``[C, H, W]`` (floats in [0, 1], or uint8) to superpixel graphs.

    ``n_segments``: the superpixels SLIC aims for (it returns about that many; the paper's
    CIFAR-10 graphs have up to 150 nodes, MNIST's 75); ``compactness``: SLIC's trade-off of
    colour against position (larger: squarer superpixels); ``knn``: 0 joins touching
    superpixels, ``k`` > 0 each to its ``k`` nearest in position instead.
    """

    n_segments: int = 150
    compactness: float = 10.0
    knn: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.n_segments, bool) or not isinstance(self.n_segments, int) or self.n_segments < 2:
            raise UserError(f"n_segments: must be a whole number >= 2, got {self.n_segments!r}")
        if isinstance(self.compactness, bool) or not isinstance(self.compactness, (int, float)) \
                or not np.isfinite(self.compactness) or self.compactness <= 0:
            raise UserError(f"compactness: must be a number > 0, got {self.compactness!r}")
        if isinstance(self.knn, bool) or not isinstance(self.knn, int) or self.knn < 0:
            raise UserError(f"knn: must be a whole number >= 0 (0: join touching superpixels), got {self.knn!r}")

    @property
    def node_features(self) -> int:
        """Features per node beyond the colour channels: centroid y, x and size."""
        return 3

    # --- one image ------------------------------------------------------------------------------
    def check(self, image: torch.Tensor) -> None:
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise UserError(f"image: superpixel graphs are made from images [C, H, W] with 1 or 3 channels, got {shape}")
        h, w = image.shape[-2:]
        if h * w < self.n_segments * MIN_PIXELS:
            side = int(np.ceil(np.sqrt(self.n_segments * MIN_PIXELS)))
            raise UserError(f"image: {h}x{w} pixels are too few for n_segments={self.n_segments} superpixels (each needs "
                            f"{MIN_PIXELS} pixels on average): use images of at least {side}x{side} (--image-size) "
                            f"or fewer superpixels (--model-kwargs n_segments={h * w // MIN_PIXELS})")
        if image.is_floating_point() and not bool(torch.isfinite(image).all()):
            raise UserError("image: holds NaN or infinite values")

    def segments(self, image: torch.Tensor) -> np.ndarray:
        """SLIC's superpixel labels ``[H, W]`` (0..N-1, every label present) of one image."""
        from skimage.segmentation import slic

        self.check(image)
        array = _as_unit_float(image).permute(1, 2, 0).numpy().astype(np.float64)
        if array.shape[-1] == 1:  # grey as RGB: SLIC then compares lightness (CIELAB's L, 0..100) as for colour
            array = np.repeat(array, 3, axis=-1)
        labels = slic(array, n_segments=self.n_segments, compactness=self.compactness, channel_axis=-1, start_label=0)
        _, labels = np.unique(labels, return_inverse=True)  # contiguous 0..N-1
        return labels.reshape(array.shape[:2])

    def graph(self, image: torch.Tensor, segments: np.ndarray | None = None) -> Data:
        """The superpixel graph of one image (``x`` ``[N, C + 3]``, ``pos`` ``[N, 2]`` as (y, x),
        ``edge_index`` ``[2, E]``, ``edge_attr`` ``[E, 1]``), from the cache when seen before."""
        key = None
        if segments is None:
            self.check(image)
            key = (self, _digest(image))
            hit = _CACHE.get(key)
            if hit is not None:
                _CACHE.move_to_end(key)
                return hit
            segments = self.segments(image)
        data = self._build(_as_unit_float(image).numpy(), segments)
        if key is not None:
            _CACHE[key] = data
            if len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        return data

    def _build(self, image: np.ndarray, labels: np.ndarray) -> Data:
        c, h, w = image.shape
        n = int(labels.max()) + 1
        flat = labels.ravel()
        count = np.bincount(flat, minlength=n).astype(np.float64)
        colour = np.stack([np.bincount(flat, weights=image[k].ravel(), minlength=n) for k in range(c)], 1) / count[:, None]
        yy, xx = np.mgrid[0:h, 0:w]
        pos = np.stack([np.bincount(flat, weights=yy.ravel(), minlength=n) / count / max(h - 1, 1),
                        np.bincount(flat, weights=xx.ravel(), minlength=n) / count / max(w - 1, 1)], 1)
        size = count / count.mean()
        src, dst = self._knn(pos) if self.knn else _touching(labels, n)
        dp = ((pos[src] - pos[dst]) ** 2).sum(1)
        dc = ((colour[src] - colour[dst]) ** 2).sum(1)
        weight = np.exp(-dp / max(dp.mean(), 1e-12) - dc / max(dc.mean(), 1e-12)) if len(src) else np.zeros(0)
        x = np.concatenate([colour, pos, size[:, None]], 1)
        return pyg().data.Data(x=torch.from_numpy(x).float(), pos=torch.from_numpy(pos).float(),
                    edge_index=torch.from_numpy(np.stack([src, dst])).long(),
                    edge_attr=torch.from_numpy(weight).float()[:, None])

    def _knn(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pos)
        k = min(self.knn, n - 1)
        d = ((pos[:, None] - pos[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        near = np.argsort(d, axis=1, kind="stable")[:, :k]
        src = np.repeat(np.arange(n), k)
        pairs = np.unique(np.concatenate([np.stack([src, near.ravel()], 1), np.stack([near.ravel(), src], 1)]), axis=0)
        return pairs[:, 0], pairs[:, 1]

    # --- batches ----------------------------------------------------------------------------------
    def batch(self, images: torch.Tensor) -> Batch:
        """One PyG ``Batch`` of the graphs of ``images`` ``[B, C, H, W]`` (on their device)."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise UserError(f"images: a batch [B, C, H, W] of images or a torch_geometric Batch, got {shape}")
        cpu = images.detach().float().cpu()
        return pyg().data.Batch.from_data_list([self.graph(im) for im in cpu]).to(images.device)

    def precompute(self, images: torch.Tensor, workers: int = 0, chunk: int = 256) -> int:
        """Fill the cache with the graphs of uint8 (or [0, 1]) ``images`` ``[N, C, H, W]``, using
        ``workers`` processes; returns how many were computed."""
        todo = [im for im in _unit_images(images) if (self, _digest(im)) not in _CACHE]
        if workers <= 1 or len(todo) < 2 * chunk:
            for im in todo:
                self.graph(im)
            return len(todo)
        import multiprocessing as mp

        parts = [torch.stack(todo[i:i + chunk]) for i in range(0, len(todo), chunk)]
        with mp.get_context("spawn").Pool(workers) as pool:
            for part, graphs in zip(parts, pool.imap(_graphs_of, [(self, p) for p in parts])):
                for im, g in zip(part, graphs):
                    _CACHE[(self, _digest(im))] = g
        return len(todo)


def _graphs_of(args) -> list[Data]:
    spec, images = args
    return [spec.graph(im) for im in images]


def _touching(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Both directions of every pair of labels that are 4-neighbours somewhere."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    keep = a != b
    a, b = a[keep], b[keep]
    codes = np.unique(np.concatenate([a * n + b, b * n + a]))
    return codes // n, codes % n


def _as_uint8(image: torch.Tensor) -> torch.Tensor:
    """The 8-bit image graphs are made from: uint8 as it is, floats in [0, 1] rounded to 256 levels."""
    if image.dtype == torch.uint8:
        return image.detach().cpu()
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def _as_unit_float(image: torch.Tensor) -> torch.Tensor:
    return _as_uint8(image).float() / 255


def _unit_images(images: torch.Tensor) -> list[torch.Tensor]:
    return list(_as_uint8(images))


def _digest(image: torch.Tensor) -> tuple:
    t = _as_uint8(image).contiguous()
    return tuple(t.shape), hashlib.blake2b(t.numpy().tobytes(), digest_size=16).hexdigest()


def clear_cache() -> None:
    """Forget every cached graph."""
    _CACHE.clear()


def draw_graph(image: torch.Tensor, spec: SuperpixelGraphs, scale: int | None = None) -> torch.Tensor:
    """The image (uint8 ``[C, H, W]``) enlarged by ``scale`` (default: to about 256 px) with its
    superpixels' borders (yellow), edges (white) and nodes (red), as uint8 ``[3, H', W']``."""
    from PIL import Image, ImageDraw
    from skimage.segmentation import find_boundaries

    unit = _as_unit_float(image)
    labels = spec.segments(unit)
    data = spec.graph(unit, labels)
    h, w = labels.shape
    scale = scale or max(1, 256 // max(h, w))
    rgb = (unit.expand(3, h, w) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    big = np.repeat(np.repeat(rgb, scale, 0), scale, 1)
    edges = find_boundaries(np.repeat(np.repeat(labels, scale, 0), scale, 1), mode="inner")
    big[edges] = (big[edges] * 0.4 + np.array([255, 220, 0]) * 0.6).astype(np.uint8)
    picture = Image.fromarray(big)
    pen = ImageDraw.Draw(picture)
    centre = (data.pos.numpy() * [h - 1, w - 1] + 0.5) * scale  # (y, x) pixel centres
    for i, j in data.edge_index.t().tolist():
        if i < j:
            pen.line([(centre[i, 1], centre[i, 0]), (centre[j, 1], centre[j, 0])], fill=(255, 255, 255), width=1)
    r = max(1.5, scale / 4)
    for y, x in centre:
        pen.ellipse([x - r, y - r, x + r, y + r], fill=(230, 30, 30))
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).contiguous()
