"""Evaluating a saved classifier on a dataset, with the classes matched by name.

A checkpoint knows its class names; a test folder knows its own. Labels are mapped by name, not
by sorted position, so a folder that lacks a class (or lists them in another order) is scored
correctly, and a folder with a class the checkpoint never saw is an error naming both lists.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig
from .loader import make_batches
from .task import ClassificationTask


def match_classes(ds, names: list[str] | None, num_classes: int):
    """``ds`` with its labels re-indexed into the checkpoint's class list ``names``."""
    from ..data import ImageDataset

    ds_names = list(ds.class_names)
    if names is None:
        if len(ds_names) != num_classes:
            raise ValueError(f"the checkpoint has no class names and {num_classes} outputs; the data has "
                             f"{len(ds_names)} classes: {ds_names}")
        return ds
    missing = [n for n in ds_names if n not in names]
    if missing:
        raise ValueError(f"the data's classes do not match the checkpoint's: {missing} are not among the checkpoint's "
                         f"classes.\n  data ({len(ds_names)}): {ds_names}\n  checkpoint ({len(names)}): {list(names)}")
    if ds_names == list(names):
        return ds
    lut = torch.tensor([list(names).index(n) for n in ds_names], dtype=torch.int64)
    labels = lut[ds.labels]
    if ds.images is not None:
        return ImageDataset(names, labels, images=ds.images)
    return ImageDataset(names, labels, files=ds.files, decode=ds.decode)


@torch.no_grad()
def evaluate_model(model: nn.Module, ds, *, input_size: int, mean, std, class_names: list[str] | None = None,
                   batch_size: int = 256, device: str | torch.device | None = None, workers: int | None = None) -> dict:
    """Top-1/top-5 accuracy, loss, count, per-class accuracy and the confusion matrix of ``model``
    on ``ds`` (labels matched to ``class_names`` by name)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    num_classes = model.num_classes
    ds = match_classes(ds, class_names, num_classes)
    names = list(class_names or ds.class_names)
    in_chans = len(mean)
    cfg = TrainConfig(workers=workers, channels_last=False)
    batches = make_batches(ds, device, batch_size, train=False, cfg=cfg, input_size=input_size, mean=mean, std=std,
                           in_chans=in_chans)
    model = model.to(device).eval()
    task = ClassificationTask(num_classes, names)
    meter = task.meter(device, train=False)
    for x, y in batches.epoch(0):
        task.update(meter, model(x), y, None)
    m = meter.compute()
    cm = torch.tensor(m["confusion"])
    per_class = cm.diag().double() / cm.sum(1).clamp(min=1)
    present = cm.sum(1) > 0
    m["per_class_accuracy"] = {names[i]: float(per_class[i]) for i in range(num_classes) if present[i]}
    return m
