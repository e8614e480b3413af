"""Evaluating a saved model on a dataset, with the classes matched by name.

The model's card says its task (classification, segmentation, detection), and the task's meter
scores it (:mod:`.metrics`). A checkpoint knows its class names; a test folder knows its own.
Labels (and mask values, box labels) are mapped by name, not by sorted position, so a folder
that lacks a class (or lists them in another order) is scored correctly, and a folder with a
class the checkpoint never saw is an error naming both lists.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig
from .loader import make_batches
from .task import Task, make_task


def model_task(model: nn.Module, class_names: list[str] | None = None) -> Task:
    """The :class:`Task` of ``model``'s card (classification for a model without one)."""
    card = getattr(model, "card", None)
    num_classes = getattr(model, "num_classes", None) or len(class_names or [])
    return make_task(card.task if card is not None else "classification", class_names or [], num_classes=num_classes,
                     model=model)


def match_classes(ds, names: list[str] | None, num_classes: int):
    """``ds`` with its labels re-indexed into the checkpoint's class list ``names``."""
    ds_names = list(ds.class_names)
    if getattr(ds, "task", None) == "captioning" and names is not None:  # words it lacks are <unk>, as in training
        from ..data.captions import match_vocabulary

        return match_vocabulary(ds, names)
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
    return ds.remap_classes(names, lut)


@torch.no_grad()
def evaluate_model(model: nn.Module, ds, *, input_size: int, mean, std, class_names: list[str] | None = None,
                   batch_size: int = 256, device: str | torch.device | None = None, workers: int | None = None,
                   task: Task | None = None) -> dict:
    """The metrics of ``model`` on ``ds`` (classes matched to ``class_names`` by name), as its
    task measures them (``task``: default :func:`model_task`): for a classifier top-1/top-5
    accuracy, loss, count, per-class accuracy and the confusion matrix; for a segmenter mean IoU,
    pixel accuracy, per-class IoU, loss and the pixel confusion matrix; for a detector mAP@0.5
    and per-class AP."""
    from ..validate import UserError, check_option, resolve_device

    check_option("batch_size", batch_size)
    check_option("workers", workers)
    check_option("image_size", input_size, label="input_size")
    device = resolve_device(device, option="device")
    num_classes = getattr(model, "num_classes", 0)
    if not num_classes:
        raise UserError("the model has no classifier (num_classes 0): it gives features, not classes")
    task = task or model_task(model, list(class_names or ds.class_names))
    if ds.task != getattr(task, "data_task", task.name):  # a graph model is scored on classification data
        raise UserError(f"the model is a {task.name} model and the data is for {ds.task}")
    ds = match_classes(ds, class_names, num_classes)
    cfg = TrainConfig(workers=workers, channels_last=False)
    batches = make_batches(ds, device, batch_size, train=False, cfg=cfg, task=task, input_size=input_size, mean=mean,
                           std=std, in_chans=len(mean))
    model = model.to(device).eval()
    meter = task.meter(device, train=False)
    for x, y in batches.epoch(0):
        meter.update(model(x), y, None)
    return meter.compute()
