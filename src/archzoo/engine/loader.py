"""Batches for the trainer, from any :class:`archzoo.data.ImageDataset`.

Two sources with one interface (``len(source)`` steps; ``source.epoch(e)`` yields ``(x, y)`` on
the device: the model input and the task's batch target); the :class:`~archzoo.engine.task.Task`
supplies the augmentation and the targets of both:

* :class:`DeviceBatches` — the fast path. When the whole set is decoded in memory
  (``ds.images``), the uint8 tensor and the task's per-item targets (labels, masks) are moved to
  the device once and every batch is indexed there and augmented as a batch by
  :class:`archzoo.data.gpu.BatchAugment`: no workers, no per-image Python. This is what makes a
  CIFAR-10 epoch take seconds on a GPU.
* :class:`LoaderBatches` — a DataLoader with the task's per-sample transform and collate
  function (lazy folders, RandAugment / TrivialAugment, detection's variable-length boxes).

Both visit epoch ``e`` in the order :func:`epoch_order` draws from ``(seed, e)`` alone, so a
resumed run sees the same data in the same order, and shard it across processes under torchrun
(every process gets the same number of training batches, as DistributedDataParallel requires).
"""

from __future__ import annotations

import math
import os

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
    """In-memory uint8 images and the targets named by ``task.device_keys``, kept on ``device``;
    ``task.device_batch(augment, images, targets)`` makes each batch."""

    def __init__(self, ds, device: torch.device, batch_size: int, augment, task, *, train: bool, seed: int,
                 channels_last: bool = False):
        self.images = ds.images.to(device, non_blocking=True)
        self.targets = {k: (ds.labels if k == "label" else ds.targets[k]).to(device, non_blocking=True)
                        for k in task.device_keys}
        self.augment = augment.to(device)
        self.make_batch = task.device_batch
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.channels_last = channels_last
        self.device = device
        self.n_local = len(epoch_order(len(self.images), seed, 0, False, pad=train))

    def __len__(self) -> int:
        return _steps(self.n_local, self.batch_size, self.train)

    def epoch(self, epoch: int):
        idx = epoch_order(len(self.images), self.seed, epoch, shuffle=self.train, pad=self.train).to(self.device)
        for b in _batches(idx, self.batch_size, drop_last=self.train):
            x, y = self.make_batch(self.augment, self.images[b], {k: t[b] for k, t in self.targets.items()})
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y


class _Transformed(Dataset):
    def __init__(self, ds, transform):
        self.ds, self.transform = ds, transform

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.transform(*self.ds[i])


def to_device(obj, device: torch.device):
    """Tensors, and dicts and lists of them, moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


class LoaderBatches:
    """A DataLoader over ``ds`` with the per-sample ``transform`` (``(image, target) -> (x, target)``)
    and ``collate_fn``, in :func:`epoch_order`."""

    def __init__(self, ds, device: torch.device, batch_size: int, transform, collate_fn, *, train: bool, seed: int,
                 workers: int = 0, channels_last: bool = False):
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
            yield x, to_device(y, self.device)


def make_batches(ds, device, batch_size: int, *, train: bool, cfg, task, input_size: int, mean, std, in_chans: int):
    """The fast path when ``ds`` is in memory and the task and the augmentation allow it, else a DataLoader."""
    view = dict(input_size=input_size, mean=mean, std=std, in_chans=in_chans)
    channels_last = bool(cfg.channels_last)
    if cfg.fast_path and getattr(ds, "images", None) is not None:
        augment = task.batch_augment(train, cfg, **view)
        if augment is not None:
            return DeviceBatches(ds, device, batch_size, augment, task, train=train, seed=cfg.seed,
                                 channels_last=channels_last)
    workers = cfg.workers if cfg.workers is not None else min(8, max((os.cpu_count() or 1) - 1, 0))
    return LoaderBatches(ds, device, batch_size, task.sample_transform(train, cfg, **view), task.collate, train=train,
                         seed=cfg.seed, workers=workers, channels_last=channels_last)
