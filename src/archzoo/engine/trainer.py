"""The training loop every model shares.

:class:`Trainer` owns what does not depend on the task: the device and precision (bf16
autocast and channels_last on CUDA, ``torch.compile`` on request), the optimizer and schedule,
gradient clipping, the weight EMA, DistributedDataParallel under torchrun, checkpoints and
exact resumption, and what the run reports. Everything task-specific (targets, batches and
their augmentation, the forward pass, loss, metrics, logged fields, pictures) goes through a
:class:`~archzoo.engine.task.Task`, chosen by the data's ``task`` unless one is given.

Run folder (rank 0 writes it)::

    last.safetensors    the evaluated weights (the EMA when on) + metadata: archzoo.load_model rebuilds it
    best.safetensors    the same, at the epoch with the best validation metric
    state.safetensors   everything --resume needs (model, optimizer, EMA, RNG states, epoch, history)
    metrics.csv  curves.png  summary.json  [tensorboard/]  and the task's pictures (confusion.png, predictions.png)
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import atomic_write_text, read_metadata, save_tensors
from ..data.gpu import BatchAugment
from . import distributed as dist
from .config import TrainConfig
from .ema import ModelEMA
from .loader import make_batches
from .optim import Schedule, apply_freeze, build_optimizer, frozen_norms_eval
from .progress import Progress, RunLog
from .state import STATE_FILE, load_training_state, save_state
from .task import Task, make_task

LOG_EVERY = 20  # steps between progress updates (and checks for a non-finite loss)


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or infinite; the run stopped before saving them."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """Bit-for-bit repeatable runs. On CPU every op the engine uses is deterministic; on CUDA ops
    without a deterministic kernel warn instead of failing."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on and torch.cuda.is_available()


def model_mean_std(model: nn.Module, in_chans: int) -> tuple[list[float], list[float]]:
    """The card's normalisation, averaged to one channel for grey inputs. A detector normalises
    inside (its :class:`~archzoo.detection.DetectionTransform`, with the card's statistics), so
    the engine hands it images in 0..1: mean 0, std 1."""
    from ..registry import IMAGENET_MEAN, IMAGENET_STD

    card = getattr(model, "card", None)
    if card is not None and card.task == "detection":
        return [0.0] * in_chans, [1.0] * in_chans
    mean, std = (list(card.mean), list(card.std)) if card is not None else (list(IMAGENET_MEAN), list(IMAGENET_STD))
    if in_chans != len(mean):
        mean, std = [sum(mean) / len(mean)] * in_chans, [sum(std) / len(std)] * in_chans
    return mean, std


class Trainer:
    """Train ``model`` on ``train_data`` (an :class:`archzoo.data.ImageDataset` of any task),
    validating on ``val_data``; :meth:`fit` runs the epochs and returns the summary.

    ``input_size`` is the side of the square model input (default: the in-memory images' size,
    else the card's); ``mean``/``std`` default to the card's. ``out`` is the run folder (``None``:
    nothing is written). ``log``: ``"bar"``, ``"json"`` or ``"quiet"``. ``task``: default
    :func:`~archzoo.engine.task.make_task` of the data's task, configured by the recipe.
    ``teacher``: a trained classifier to distil from (see :class:`~archzoo.engine.task.ClassificationTask`).
    """

    def __init__(self, model: nn.Module, train_data, val_data=None, *, config: TrainConfig | None = None,
                 task: Task | None = None, out: str | Path | None = None, class_names: list[str] | None = None,
                 input_size: int | None = None, mean=None, std=None, log: str = "bar", tensorboard: bool = False,
                 device: str | None = None, extra_meta: dict | None = None, teacher: nn.Module | None = None):
        cfg = (config or TrainConfig()).resolved()
        self.device = dist.setup(device)
        cuda = self.device.type == "cuda"
        if cfg.amp is None:
            cfg.amp = cuda
        if cfg.channels_last is None:
            cfg.channels_last = cuda
        self.cfg = cfg
        set_deterministic(cfg.deterministic)
        world = dist.world_size()
        if cfg.batch_size % world:
            raise ValueError(f"batch size {cfg.batch_size} must be divisible by the {world} processes")

        self.class_names = list(class_names or getattr(train_data, "class_names", None) or [])
        in_chans = _channels(train_data)
        self.in_chans = in_chans
        if input_size is None:
            images = getattr(train_data, "images", None)
            input_size = images.shape[-1] if images is not None else getattr(model, "card", None) and model.card.input_size[-1]
            input_size = input_size or 224
        self.input_size = int(input_size)
        dmean, dstd = model_mean_std(model, in_chans)
        self.mean, self.std = list(mean or dmean), list(std or dstd)
        if teacher is not None:
            teacher = teacher.to(self.device).eval().requires_grad_(False)
            if cfg.channels_last:
                teacher = teacher.to(memory_format=torch.channels_last)
            if cfg.compile:  # the teacher's forward runs every step, as often as the student's
                teacher = torch.compile(teacher, mode=cfg.compile_mode)
        self.task = task or make_task(_task_of(model, train_data), self.class_names, cfg=cfg, teacher=teacher,
                                      num_classes=getattr(model, "num_classes", len(self.class_names)),
                                      train_data=train_data, model=model)
        self.extra_meta = dict(extra_meta or {})

        self.model = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.trainable = apply_freeze(self.model, cfg.freeze)
        self.optimizer = build_optimizer(self.model, cfg)
        self.ema = ModelEMA(self.model, cfg.ema) if cfg.ema > 0 else None

        per_rank = cfg.batch_size // world
        common = dict(cfg=cfg, task=self.task, input_size=self.input_size, mean=self.mean, std=self.std,
                      in_chans=in_chans)
        self.train_data, self.val_data = train_data, val_data
        self.train_batches = make_batches(train_data, self.device, per_rank, train=True, **common)
        self.val_batches = make_batches(val_data, self.device, per_rank, train=False, **common) if val_data is not None and len(val_data) else None
        if len(self.train_batches) == 0:
            raise ValueError("the training set is empty")
        self.schedule = Schedule(cfg, len(self.train_batches))
        self.step = 0

        self.train_model = self.model
        if dist.enabled():
            ids = [self.device.index] if cuda else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.eval_model = self.ema.module if self.ema is not None else self.model
        self._eval_forward = self.eval_model
        if cfg.compile:
            self.train_model = torch.compile(self.train_model, mode=cfg.compile_mode)
            self._eval_forward = torch.compile(self.eval_model, mode=cfg.compile_mode)
        self.out = Path(out) if out is not None else None
        self.progress = Progress(log)
        self.columns = ("epoch", "lr", *(f"train_{k}" for k in self.task.train_fields),
                        *(f"val_{k}" for k in self.task.val_fields), "epoch_time", "images_per_s")
        self.runlog = RunLog(self.out, self.columns, metric=self.task.monitor, tensorboard=tensorboard)
        seed_everything(cfg.seed + dist.rank())

    # --- one epoch ------------------------------------------------------------------------------
    def _autocast(self):
        if not self.cfg.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _check_finite(self, value: torch.Tensor, where: str) -> None:
        bad = not bool(torch.isfinite(value).all())
        if dist.broadcast_flag(bad, self.device):
            raise TrainingDiverged(where)

    def train_epoch(self, epoch: int) -> dict:
        cfg, task = self.cfg, self.task
        self.train_model.train()
        if cfg.freeze != "none":
            frozen_norms_eval(self.model)
        meter = task.meter(self.device, train=True)
        steps = len(self.train_batches)
        self.progress.start_epoch(epoch + 1, cfg.epochs, steps)
        t0, seen = time.perf_counter(), 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        lr = self.schedule.apply(self.optimizer, cfg.lr, self.step)
        for i, (x, y) in enumerate(self.train_batches.epoch(epoch)):
            lr = self.schedule.apply(self.optimizer, cfg.lr, self.step)
            with self._autocast():
                x, target = task.train_batch(x, y)  # under autocast: a distillation teacher runs here
                out = task.forward(self.train_model, x, target)
            loss = task.loss(out, target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(params, cfg.clip_grad)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            meter.update(out, target, loss)
            seen += x.shape[0]
            if (i + 1) % LOG_EVERY == 0 or i + 1 == steps:
                running = meter.running()
                self._check_finite(running["loss"], f"the training loss became {float(running['loss']):.4g} in "
                                                    f"epoch {epoch + 1}, step {i + 1} (lr {lr:.4g})")
                self.progress.step(i + 1, {k: float(v) for k, v in running.items()},
                                   seen * dist.world_size() / (time.perf_counter() - t0))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - t0
        return {**meter.compute(), "lr": lr, "time": elapsed, "images_per_s": seen * dist.world_size() / max(elapsed, 1e-9)}

    @torch.no_grad()
    def evaluate(self, batches=None, model: nn.Module | None = None) -> dict:
        """Metrics of ``model`` (default: the EMA when on, else the model) on ``batches`` (default:
        the validation set), reduced over processes."""
        batches = batches or self.val_batches
        forward = self._eval_forward if model is None else model
        (model or self.eval_model).eval()
        meter = self.task.meter(self.device, train=False)
        for x, y in batches.epoch(0):
            with self._autocast():
                out = forward(x)
            meter.update(out, y, None)
        return meter.compute()

    # --- checkpoints ----------------------------------------------------------------------------
    def model_meta(self, epoch: int, metrics: dict) -> dict:
        return {"class_names": self.class_names, "input_size": [self.in_chans, self.input_size, self.input_size],
                "mean": self.mean, "std": self.std, "task": self.task.name, "epoch": epoch,
                "metrics": metrics, "recipe": self.cfg.to_dict(),
                **self.extra_meta}

    def save_model_file(self, path: Path, epoch: int, metrics: dict) -> None:
        if not dist.is_main():
            return
        from ..io import save_model

        meta = self.model_meta(epoch, metrics)
        if hasattr(self.eval_model, "build_args"):
            save_model(self.eval_model, path, **meta)
        else:
            save_tensors(path, self.eval_model.state_dict(), meta)

    def _score(self, row: dict) -> float | None:
        """Higher is better: the task's monitored validation metric, or minus the training loss
        when there is no validation set (``None`` in an epoch without validation)."""
        if self.val_batches is None:
            return -row["train_loss"]
        value = row.get(f"val_{self.task.monitor}")
        if value is None:
            return None
        return value if self.task.monitor_mode == "max" else -value

    # --- the run --------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> dict:
        """Train for ``config.epochs`` epochs (continuing from ``out/state.safetensors`` with
        ``resume``); return the summary (also written to ``summary.json``)."""
        cfg = self.cfg
        start, history, best, best_epoch = 0, [], None, None
        if resume:
            if self.out is None or not (self.out / STATE_FILE).exists():
                raise FileNotFoundError(f"nothing to resume: {self.out}/{STATE_FILE} does not exist")
            self._check_same_data(read_metadata(self.out / STATE_FILE))  # before the weights are loaded
            meta = load_training_state(self.out / STATE_FILE, model=self.model, optimizer=self.optimizer, ema=self.ema,
                              device=self.device)
            start, self.step, history = meta["epoch"], meta["step"], meta["history"]
            best, best_epoch = meta.get("best"), meta.get("best_epoch")
            self.progress.info(f"resuming {self.out} after epoch {start}")
        elif self.out is not None and dist.is_main():
            self.out.mkdir(parents=True, exist_ok=True)
        self.progress.event("start", epochs=cfg.epochs, start_epoch=start + 1, steps_per_epoch=len(self.train_batches),
                            train_size=len(self.train_data), val_size=len(self.val_data) if self.val_data is not None else 0,
                            device=str(self.device), world_size=dist.world_size(), fast_path=_is_fast(self.train_batches))
        t_run = time.perf_counter()
        val = {}
        for epoch in range(start, cfg.epochs):
            try:
                tr = self.train_epoch(epoch)
                last = epoch + 1 == cfg.epochs
                val = self.evaluate() if self.val_batches is not None and ((epoch + 1) % cfg.eval_every == 0 or last) else {}
                if "loss" in val:
                    self._check_finite(torch.tensor(val["loss"]), f"the validation loss became {val['loss']:.4g} after epoch {epoch + 1}")
                self._check_finite(torch.stack([p.detach().float().abs().max() for p in self.model.parameters()]).max(),
                                   f"the weights became NaN or infinite in epoch {epoch + 1}")
            except TrainingDiverged as e:
                kept = f"the last good checkpoint (epoch {start if not history else history[-1]['epoch']}) is kept in {self.out}" \
                    if self.out is not None and history else "no checkpoint was written"
                self.progress.event("diverged", epoch=epoch + 1, reason=str(e))
                raise TrainingDiverged(f"training stopped: {e}; {kept}. Lower --lr, add --warmup-epochs or --clip-grad.") from None
            row = {"epoch": epoch + 1, "lr": tr["lr"], **{f"train_{k}": tr.get(k) for k in self.task.train_fields},
                   **{f"val_{k}": val.get(k) for k in self.task.val_fields},
                   "epoch_time": tr["time"], "images_per_s": tr["images_per_s"]}
            history.append(row)
            score = self._score(row)
            is_best = score is not None and (best is None or score > best)
            if self.out is not None:
                metrics = {k: v for k, v in row.items() if k != "epoch"}
                self.save_model_file(self.out / "last.safetensors", epoch + 1, metrics)
                if is_best:
                    self.save_model_file(self.out / "best.safetensors", epoch + 1, metrics)
            if is_best:
                best, best_epoch = score, epoch + 1
            if self.out is not None:
                save_state(self.out / STATE_FILE, model=self.model, optimizer=self.optimizer, ema=self.ema,
                           device=self.device, meta={"epoch": epoch + 1, "step": self.step, "history": history,
                                                     "best": best, "best_epoch": best_epoch, "recipe": cfg.to_dict(),
                                                     "class_names": self.class_names,
                                                     "data_order": {"seed": cfg.seed, "next_epoch": epoch + 1,
                                                                    "train_size": len(self.train_data)},
                                                     **self.extra_meta})
                self.runlog.write(history)
            self.progress.end_epoch(row)
        self.runlog.close()
        if not val and self.val_batches is not None:
            val = self.evaluate()
        return self._finish(history, val, best_epoch, time.perf_counter() - t_run)

    def _check_same_data(self, meta: dict) -> None:
        """A resumed run must see the data it started with: another training-set size or class
        list would silently change the data order or relabel the classes."""
        problems = []
        size = meta.get("data_order", {}).get("train_size")
        if size is not None and size != len(self.train_data):
            problems.append(f"it trained on {size} images, the data now has {len(self.train_data)}")
        names = meta.get("class_names")
        if names is not None and list(names) != self.class_names:
            problems.append(f"its classes were {names}, the data's are {self.class_names}")
        if problems:
            raise ValueError(f"cannot resume {self.out}: the training data changed since the run started ("
                             + "; ".join(problems) + "); start a new run, e.g. with --init from its checkpoint")

    def _finish(self, history: list[dict], val: dict, best_epoch: int | None, run_time: float) -> dict:
        import json

        task, last = self.task, history[-1] if history else {}
        better = max if task.monitor_mode == "max" else min
        monitored = [h[f"val_{task.monitor}"] for h in history if h.get(f"val_{task.monitor}") is not None]
        summary = {
            "model": getattr(self.model, "build_args", {}).get("model", type(self.model).__name__),
            "task": task.name, "epochs": self.cfg.epochs, "best_epoch": best_epoch,
            **{f"train_{k}": last.get(f"train_{k}") for k in task.train_fields},
            **{f"val_{k}": val.get(k) for k in task.val_fields},
            "val_count": val.get("count"), "train_count": len(self.train_data),
            f"best_val_{task.monitor}": better(monitored, default=None),
            "time_s": run_time, "mean_epoch_time_s": sum(h["epoch_time"] for h in history) / max(len(history), 1) if history else None,
            "params": sum(p.numel() for p in self.model.parameters()), "trainable_params": self.trainable,
            "class_names": self.class_names, "input_size": [self.in_chans, self.input_size, self.input_size],
            "device": str(self.device), "world_size": dist.world_size(), "fast_path": _is_fast(self.train_batches),
            "recipe": self.cfg.to_dict(), "history": history,
        }
        if self.out is not None and dist.is_main():
            preprocess = BatchAugment(self.input_size, self.mean, self.std, train=False, in_chans=self.in_chans)
            task.report(self.out, self.eval_model, val, self.val_data if val else None, preprocess.to(self.device))
            summary["files"] = sorted({p.name for p in self.out.iterdir() if p.is_file() and not p.name.startswith(".")}
                                      | {"summary.json"})
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        self.progress.event("end", **{k: v for k, v in summary.items() if k not in ("history", "recipe", "class_names")})
        return summary


def _task_of(model: nn.Module, data) -> str:
    """The data's task; a zoo model must have been made for it."""
    task = getattr(data, "task", "classification")
    card = getattr(model, "card", None)
    if card is not None and card.task == "graph" and task == "classification":
        return "graph"  # a superpixel-graph model (archzoo.graph) classifies images: it trains on classification data
    if card is not None and card.task != task:
        raise ValueError(f"{card.name} is a {card.task} model and the data is for {task}; pick a {task} model "
                         f"(archzoo models --task {task}) or {card.task} data")
    return task


def _channels(ds) -> int:
    images = getattr(ds, "images", None)
    if images is not None:
        return int(images.shape[1])
    return int(ds[0][0].shape[0])


def _is_fast(batches) -> bool:
    from .loader import DeviceBatches

    return isinstance(batches, DeviceBatches)
