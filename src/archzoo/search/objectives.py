"""What a search maximises: proxy accuracy after a short training, under constraints, optionally
traded against latency.

* Proxy accuracy: the architecture trained for ``epochs`` on the data (``digits``, ``shapes``,
  an image folder or a CIFAR folder, optionally a seeded subset) with archzoo's own engine
  (:func:`archzoo.engine.api.train`), validation accuracy on the held-out split. No augmentation
  by default: a few epochs are too short for it (and a padded random crop ruins 8x8 digits).
* Cost: parameters, multiply-adds (:mod:`archzoo.profile`) and the median CPU latency of a
  batch-1 forward at the data's resolution (measured, so noisy on a shared machine).
* Constraints (``max_params``, ``max_macs``, ``max_latency_ms``) are checked before training:
  an architecture over budget is *infeasible* and never trained.
* Multi-objective mode (``target_latency_ms`` set): the score is MnasNet's soft reward,
  ``accuracy * (latency / target) ** w`` with ``w = -0.07`` (Tan et al. 2019, "MnasNet:
  Platform-Aware Neural Architecture Search for Mobile", arXiv:1807.11626); the report also
  draws the Pareto front of accuracy against latency and parameters.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

from ..validate import UserError


@dataclass
class Objective:
    data: str = "digits"
    epochs: int = 1
    image_size: int | None = None
    train_limit: int | None = None
    val_limit: int | None = None
    val_split: float = 0.2
    batch_size: int = 64
    lr: float | None = None
    augment: str = "none"
    max_params: int | None = None
    max_macs: float | None = None
    max_latency_ms: float | None = None
    target_latency_ms: float | None = None
    latency_weight: float = -0.07
    latency_repeats: int = 5
    device: str = "cpu"  # where proxies train (latency is always measured on the CPU)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        for name in ("max_params", "max_macs", "max_latency_ms", "target_latency_ms"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {v}")
        from ..validate import resolve_device

        resolve_device(self.device, option="--device")  # a typo or a missing GPU fails before any trial
        self._splits = None

    def config(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("latency_repeats", "device")}

    def splits(self):
        """The training and validation sets, loaded once per worker."""
        if self._splits is None:
            from ..data import DatasetSplits
            from ..engine.api import load_training_data

            train, val, names, _ = load_training_data(self.data, val_split=self.val_split, image_size=self.image_size,
                                                      seed=0, train_limit=self.train_limit, val_limit=self.val_limit)
            if val is None or len(val) == 0:
                raise UserError(f"--data {self.data}: no validation images to score architectures on")
            self._splits = DatasetSplits(train=train, val=val, class_names=list(names))
        return self._splits

    def input_size(self) -> tuple[int, int, int]:
        x = self.splits().train[0][0]
        return tuple(x.shape)

    def cost(self, model) -> dict:
        """Parameters, multiply-adds and CPU latency (ms) of ``model`` at the data's input size."""
        from ..profile import count_gflops, count_params, measure_latency

        size = self.input_size()
        return {"params": count_params(model), "macs": round(count_gflops(model, size) * 1e9),
                "latency_ms": round(measure_latency(model, size, repeats=self.latency_repeats, warmup=1), 4)}

    def violation(self, cost: dict) -> str | None:
        """Why ``cost`` breaks a constraint, or ``None``."""
        for key, limit in (("params", self.max_params), ("macs", self.max_macs), ("latency_ms", self.max_latency_ms)):
            if limit is not None and cost[key] > limit:
                return f"{key} {cost[key]:g} > {limit:g}"
        return None

    def score(self, accuracy: float, cost: dict) -> float:
        if self.target_latency_ms is None:
            return accuracy
        return accuracy * (cost["latency_ms"] / self.target_latency_ms) ** self.latency_weight

    def evaluate(self, space, decisions: list[int], seed: int) -> tuple[float | None, dict]:
        """``(score, metrics)``; ``score`` is ``None`` for an infeasible architecture (metrics say why)."""
        from ..engine.api import train

        from ..engine.trainer import seed_everything

        t0 = time.perf_counter()
        splits = self.splits()
        seed_everything(seed)  # the initial weights too: a trial scores the same in any process, after any other
        model = space.build(decisions, num_classes=len(splits.class_names), in_chans=self.input_size()[0])
        metrics = self.cost(model)
        why = self.violation(metrics)
        if why is not None:
            return None, {**metrics, "infeasible": why, "seconds": round(time.perf_counter() - t0, 3)}
        options = {"epochs": self.epochs, "batch_size": self.batch_size, "seed": seed, "augment": self.augment}
        if self.lr is not None:
            options["lr"] = self.lr
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = train(model, splits, out=None, log="quiet", device=self.device, **options)
        acc = float(summary["val_accuracy"])
        metrics.update(accuracy=acc, train_loss=round(float(summary["train_loss"]), 5),
                       seconds=round(time.perf_counter() - t0, 3))
        return self.score(acc, metrics), metrics
