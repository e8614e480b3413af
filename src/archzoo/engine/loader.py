"""Batches for the trainer, from any :class:`archzoo.data.ImageDataset`.

Two sources with one interface (``len(source)`` steps; ``source.epoch(e)`` yields ``(x, y)`` on
the device):

* :class:`DeviceBatches` — the fast path. When the whole set is decoded in memory
  (``ds.images``), the uint8 tensor is moved to the device once and every batch is indexed
  there and augmented as a batch by :class:`archzoo.data.gpu.BatchAugment`: no workers, no
  per-image Python. This is what makes a CIFAR-10 epoch take seconds on a GPU.
* :class:`LoaderBatches` — a DataLoader with the per-sample ``build_transform`` (lazy folders,
  RandAugment / TrivialAugment).

Both visit epoch ``e`` in the order :func:`epoch_order` draws from ``(seed, e)`` alone, so a
resumed run sees the same data in the same order, and shard it across processes under torchrun
(every process gets the same number of training batches, as DistributedDataParallel requires).
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset

from . import distributed as dist


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, pad: bool) -> torch.Tensor:
    """This process's indices for ``epoch``: a permutation seeded by ``(seed, epoch)`` (or
    ``0..n-1``), dealt round-robin to the processes; ``pad`` repeats items so every process
    gets the same count."""
    if shuffle:
        g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
        idx = torch.randperm(n, generator=g)
    else:
        idx = torch.arange(n)
    world, rank = dist.world_size(), dist.rank()
    if world > 1:
        if pad and n % world:
            total = math.ceil(n / world) * world
            idx = torch.cat([idx, idx.repeat(math.ceil(total / n))[: total - n]])
        idx = idx[rank::world]
    return idx


def _batches(idx: torch.Tensor, batch_size: int, drop_last: bool) -> list[torch.Tensor]:
    n = len(idx)
    if drop_last and n >= batch_size:
        n -= n % batch_size
    return [idx[i:i + batch_size] for i in range(0, n, batch_size)]


def _steps(n_local: int, batch_size: int, drop_last: bool) -> int:
    if drop_last and n_local >= batch_size:
        return n_local // batch_size
    return math.ceil(n_local / batch_size)


class DeviceBatches:
    """In-memory uint8 images kept on ``device``; ``augment`` maps a uint8 batch to model input."""

    def __init__(self, ds, device: torch.device, batch_size: int, augment, *, train: bool, seed: int,
                 channels_last: bool = False):
        self.images = ds.images.to(device, non_blocking=True)
        self.labels = ds.labels.to(device, non_blocking=True)
        self.augment = augment.to(device)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.channels_last = channels_last
        self.device = device
        n = len(self.labels)
        self.n_local = len(epoch_order(n, seed, 0, False, pad=train))

    def __len__(self) -> int:
        return _steps(self.n_local, self.batch_size, self.train)

    def epoch(self, epoch: int):
        idx = epoch_order(len(self.labels), self.seed, epoch, shuffle=self.train, pad=self.train).to(self.device)
        for b in _batches(idx, self.batch_size, drop_last=self.train):
            x = self.augment(self.images[b])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[b]


class _Transformed(Dataset):
    def __init__(self, ds, transform):
        self.ds, self.transform = ds, transform

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        image, label = self.ds[i]
        return self.transform(image), label


class LoaderBatches:
    """A DataLoader over ``ds`` with the per-sample ``transform``, in :func:`epoch_order`."""

    def __init__(self, ds, device: torch.device, batch_size: int, transform, *, train: bool, seed: int,
                 workers: int = 0, channels_last: bool = False, collate_fn=None):
        self.ds = _Transformed(ds, transform)
        self.device, self.batch_size, self.train, self.seed = device, batch_size, train, seed
        self.workers, self.channels_last, self.collate_fn = workers, channels_last, collate_fn
        self.n_local = len(epoch_order(len(ds), seed, 0, False, pad=train))

    def __len__(self) -> int:
        return _steps(self.n_local, self.batch_size, self.train)

    def epoch(self, epoch: int):
        idx = epoch_order(len(self.ds), self.seed, epoch, shuffle=self.train, pad=self.train)
        batches = [b.tolist() for b in _batches(idx, self.batch_size, drop_last=self.train)]
        # the generator seeds the workers' random transforms: a function of (seed, epoch) too
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch + 7919) % (2**63))
        loader = DataLoader(self.ds, batch_sampler=batches, num_workers=self.workers, generator=g,
                            pin_memory=self.device.type == "cuda", collate_fn=self.collate_fn)
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)


def make_batches(ds, device, batch_size: int, *, train: bool, cfg, input_size: int, mean, std, in_chans: int,
                 collate_fn=None):
    """The fast path when ``ds`` is in memory and the augmentation allows it, else a DataLoader."""
    import os

    from ..data import build_transform
    from ..data.gpu import BatchAugment

    small = input_size <= 64
    augment = cfg.augment if train else "none"
    channels_last = bool(cfg.channels_last)
    if cfg.fast_path and getattr(ds, "images", None) is not None and augment in ("basic", "none"):
        aug = BatchAugment(input_size, mean, std, pad=cfg.pad if small else 0, flip=cfg.flip,
                           train=train and augment == "basic", in_chans=in_chans,
                           scale=None if small else (0.08, 1.0), erase=cfg.erase if train else 0.0)
        return DeviceBatches(ds, device, batch_size, aug, train=train, seed=cfg.seed, channels_last=channels_last)
    tf = build_transform(train, input_size, mean, std, augment=augment, in_chans=in_chans, pad=cfg.pad, flip=cfg.flip,
                         erase=cfg.erase)
    workers = cfg.workers if cfg.workers is not None else min(8, max((os.cpu_count() or 1) - 1, 0))
    return LoaderBatches(ds, device, batch_size, tf, train=train, seed=cfg.seed, workers=workers,
                         channels_last=channels_last, collate_fn=collate_fn)
