"""Training runs of models fitted by their own procedure instead of the gradient loop.

A model that defines ``fit(images, targets, **options) -> list[dict]`` (the deformable part
model's latent SVM, :class:`archzoo.detection.dpm.DPM`) is fitted on the training set as the
engine would feed it (the task's evaluation transform: resized to the input size, images in
0..1), then validated and reported like any run. The run folder holds what a gradient run's does,
less what only resuming needs (no ``state.safetensors``: a fit is not resumed, it is rerun)::

    last.safetensors  best.safetensors (the same fit)  metrics.csv  curves.png  summary.json  predictions.png

``epochs`` (when given) is the number of the fit's rounds (``rounds``); each round is a row of
``metrics.csv`` with its ``train_loss`` (the fit's objective) and seconds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn

from ..validate import UserError
from .config import TrainConfig
from .loader import make_batches
from .progress import Progress, RunLog
from .task import make_task


def is_fitted(model) -> bool:
    """Whether ``model`` is fitted by its own ``fit`` rather than by gradients."""
    return isinstance(model, nn.Module) and callable(getattr(model, "fit", None))


def fit_run(model: nn.Module, train_ds, val_ds, *, cfg: TrainConfig, class_names: list[str], options: dict,
            out: str | Path | None, input_size: int | None, log: str = "bar", extra_meta: dict | None = None,
            overwrite: bool = False) -> dict:
    """Fit ``model`` on ``train_ds``, score it on ``val_ds``, write the run folder ``out``; the summary."""
    from ..checkpoint import atomic_write_text
    from ..data.gpu import BatchAugment
    from ..io import save_model
    from .trainer import model_mean_std

    if out is not None and (Path(out) / "last.safetensors").exists() and not overwrite:
        raise UserError(f"{out} already holds a run; pass --overwrite to replace it (a fitted model is refitted, "
                        "not resumed)")
    unsupported = [k for k in options if k not in ("epochs", "seed", "batch_size", "workers", "deterministic")]
    if unsupported:
        raise UserError(f"{model.card.name} is fitted by {type(model).__name__}.fit, not by gradients: the options "
                        f"{sorted(unsupported)} do not apply (give --epochs for its rounds, --seed, --train-limit)")
    task = make_task(model.card.task, class_names, num_classes=model.num_classes, cfg=cfg, train_data=train_ds)
    images = getattr(train_ds, "images", None)
    size = int(input_size or (images.shape[-1] if images is not None else model.card.input_size[-1]))
    in_chans = int(images.shape[1]) if images is not None else int(train_ds[0][0].shape[0])
    mean, std = model_mean_std(model, in_chans)
    view = dict(cfg=cfg, task=task, input_size=size, mean=mean, std=std, in_chans=in_chans)
    progress = Progress(log)
    device = torch.device("cpu")

    xs, ys = [], []
    for x, y in make_batches(train_ds, device, cfg.batch_size, train=False, **view).epoch(0):
        xs += list(x.float())
        ys += list(y)
    kwargs = {"seed": cfg.seed, "log": lambda rec: progress.info(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                                             for k, v in rec.items()}))}
    if "epochs" in options:
        kwargs["rounds"] = int(options["epochs"])
    progress.event("start", fitted=True, train_size=len(xs), val_size=len(val_ds) if val_ds is not None else 0)
    t_run = time.perf_counter()
    rounds = model.fit(xs, [{k: t[k] for k in ("boxes", "labels", "difficult") if k in t} for t in ys], **kwargs)
    fit_time = time.perf_counter() - t_run
    model.eval()

    val = {}
    if val_ds is not None and len(val_ds):
        meter = task.meter(device, train=False)
        with torch.no_grad():
            for x, y in make_batches(val_ds, device, cfg.batch_size, train=False, **view).epoch(0):
                meter.update(model(x), y, None)
        val = meter.compute()
    history = [{"epoch": r.get("round", i + 1), "lr": 0.0, "train_loss": r.get("objective"),
                **{f"val_{k}": None for k in task.val_fields}, "epoch_time": r.get("seconds"),
                "images_per_s": len(xs) / max(r.get("seconds") or 1e-9, 1e-9)} for i, r in enumerate(rounds)]
    if history:
        history[-1].update({f"val_{k}": val.get(k) for k in task.val_fields})
    metrics = {k: v for k, v in (history[-1] if history else {}).items() if k != "epoch"}
    summary = {"model": model.build_args.get("model"), "task": task.name, "epochs": len(history),
               "best_epoch": len(history) or None, "fitted": True,
               "train_loss": history[-1]["train_loss"] if history else None,
               **{f"val_{k}": val.get(k) for k in task.val_fields}, "val_count": val.get("count"),
               "train_count": len(xs), f"best_val_{task.monitor}": val.get(task.monitor), "time_s": fit_time,
               "params": sum(p.numel() for p in model.parameters()), "trainable_params": 0,
               "class_names": class_names, "input_size": [in_chans, size, size], "device": "cpu",
               "recipe": cfg.to_dict(), "history": history}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"class_names": class_names, "input_size": [in_chans, size, size], "mean": mean, "std": std,
                "task": task.name, "epoch": len(history), "metrics": metrics, "recipe": cfg.to_dict(),
                **(extra_meta or {})}
        for name in ("last.safetensors", "best.safetensors"):
            save_model(model, out / name, **meta)
        runlog = RunLog(out, ("epoch", "lr", "train_loss", *(f"val_{k}" for k in task.val_fields), "epoch_time",
                              "images_per_s"), metric=task.monitor)
        runlog.write(history)
        runlog.close()
        if val:
            task.report(out, model, val, val_ds, BatchAugment(size, mean, std, train=False, in_chans=in_chans))
        summary["files"] = sorted({p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")}
                                  | {"summary.json"})
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    progress.event("end", **{k: v for k, v in summary.items() if k not in ("history", "recipe", "class_names")})
    return summary
