"""Optimizers, parameter groups and learning-rate schedules.

* Weight decay is applied to weights only, never to norm layers and biases (the "no bias decay"
  of Goyal et al. 2017, arXiv:1706.02677, and He et al. 2018, "Bag of Tricks", arXiv:1812.01187).
* Transfer learning: ``freeze="backbone"`` freezes the backbone, the modules the backbone contract
  names (:meth:`feature_stages`, what ``features_only`` keeps), and trains the rest: a
  classifier's head (and MobileNet's head convolution), later a detector's neck and heads.
  ``backbone_lr_scale`` gives the pretrained backbone a smaller learning rate than the rest.
* Schedules are pure functions of the global step (no hidden state), so resuming needs only the
  step: cosine annealing (Loshchilov & Hutter 2016, arXiv:1608.03983), step decay (He et al.
  2015, arXiv:1512.03385), one-cycle (Smith & Topping 2017, arXiv:1708.07120), each after an
  optional linear warm-up (Goyal et al. 2017).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import TrainConfig


def backbone_parameters(model: nn.Module) -> set[int]:
    """The ``id``s of the backbone's parameters: the modules of every stage ``feature_stages()``
    lists (what ``features_only`` keeps), or a composed model's ``backbone`` module."""
    if hasattr(model, "feature_stages"):
        modules = [model.get_submodule(path) for stage in model.feature_stages()
                   for path in (*stage.steps, *filter(None, [stage.tap]))]
    elif isinstance(getattr(model, "backbone", None), nn.Module):
        modules = [model.backbone]
    else:
        raise ValueError(f"{type(model).__name__} names no backbone (no feature_stages() or .backbone)")
    return {id(p) for m in modules for p in m.parameters()}


def apply_freeze(model: nn.Module, freeze: str) -> int:
    """Freeze the backbone when ``freeze == "backbone"``; return the trainable parameter count."""
    if freeze == "backbone":
        backbone = backbone_parameters(model)
        if all(id(p) in backbone for p in model.parameters()):
            raise ValueError("--freeze backbone: nothing outside the backbone has parameters to train")
        for p in model.parameters():
            p.requires_grad_(id(p) not in backbone)
    elif freeze != "none":
        raise ValueError(f"freeze must be 'none' or 'backbone', got {freeze!r}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def frozen_norms_eval(model: nn.Module) -> None:
    """Put norm layers whose parameters are all frozen in eval mode, so a frozen backbone keeps its
    running statistics (call after ``model.train()``)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()


def param_groups(model: nn.Module, weight_decay: float, backbone_lr_scale: float = 1.0) -> list[dict]:
    """Trainable parameters split by (decay or not) x (head or backbone). Each group carries an
    ``lr_scale`` the schedule multiplies the base learning rate with."""
    backbone = backbone_parameters(model) if backbone_lr_scale != 1.0 else set()
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1  # conv / linear weights; norms and biases are 1-d
        is_head = id(p) not in backbone
        key = (decay, is_head)
        if key not in groups:
            groups[key] = {"params": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr_scale": 1.0 if is_head else backbone_lr_scale}
        groups[key]["params"].append(p)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return [groups[k] for k in sorted(groups, reverse=True)]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.backbone_lr_scale)
    if cfg.opt == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.opt == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.opt!r}")


class Schedule:
    """``factor(step)`` in [0, 1], multiplied with the base learning rate at every step."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.kind = cfg.sched
        self.steps_per_epoch = steps_per_epoch
        self.total = cfg.epochs * steps_per_epoch
        self.warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), self.total)
        self.min_ratio = cfg.min_lr_ratio
        self.milestones = [int(round(m * steps_per_epoch)) for m in cfg.milestones]
        self.gamma = cfg.gamma

    def factor(self, step: int) -> float:
        if self.kind == "onecycle":
            return self._one_cycle(step)
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "cosine":
            t = (step - self.warmup) / max(self.total - self.warmup, 1)
            return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
        raise ValueError(f"unknown schedule {self.kind!r}")

    def _one_cycle(self, step: int) -> float:
        # up from lr/25 to lr over the warm-up (default 30 % of the run), then cosine down to the floor
        up = self.warmup or max(int(0.3 * self.total), 1)
        start, floor = 1 / 25, self.min_ratio or 1 / 25e4
        if step < up:
            t = step / up
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t))
        t = (step - up) / max(self.total - up, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    def apply(self, optimizer: torch.optim.Optimizer, base_lr: float, step: int) -> float:
        lr = base_lr * self.factor(step)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr
