"""The recipe of a training run: every knob of the engine in one plain dataclass.

A config is plain data (numbers, strings, lists), so it round-trips through JSON: it is stored in
every checkpoint and ``--resume`` continues with the recipe the run started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..data.transforms import AUGMENTS, DETECTION_AUGMENTS, SEGMENTATION_AUGMENTS

AUGMENT_RECIPES = AUGMENTS + DETECTION_AUGMENTS + SEGMENTATION_AUGMENTS  # the second group for detection runs only,
# the third for segmentation runs only
PIXEL_LOSSES = ("l2", "l1")  # --loss of a super-resolution run; any other spec is a segmentation loss

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "onecycle", "constant")
FREEZE = ("none", "backbone")
# torch.compile modes: "reduce-overhead" adds CUDA graphs, which remove the per-kernel launch cost
# that bounds small networks (ResNet-20) on a GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


_FLAGS = ("nesterov", "amp", "channels_last", "compile", "deterministic", "flip", "fast_path")
_AUTO_FLAGS = ("amp", "channels_last")  # None: decided by the device


@dataclass
class TrainConfig:
    """Hyper-parameters of a run. ``None`` means "pick the usual value" (see :meth:`resolved`)."""

    epochs: int = 30
    batch_size: int = 128  # the global batch: split across processes under torchrun
    opt: str = "sgd"
    lr: float | None = None  # default: linear scaling rule, 0.1 x batch/128 (SGD), 1e-3 x batch/512 (AdamW)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None  # default 5e-4 (SGD), 0.05 (AdamW); never on norms and biases
    sched: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # the cosine / one-cycle floor, relative to lr
    milestones: list[float] = field(default_factory=list)  # step schedule, in epochs (default: 50% and 75%)
    gamma: float = 0.1  # step schedule factor
    label_smoothing: float = 0.0
    loss: str = "ce"  # segmentation: a sum of terms, e.g. ce+dice (archzoo.segmentation.losses)
    mixup: float = 0.0  # Beta(alpha, alpha) of mixup; 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha) of cutmix; 0 = off
    mix_prob: float = 1.0  # probability a batch is mixed at all
    ema: float = 0.0  # decay of the weight EMA; 0 = off
    clip_grad: float | None = None  # max global gradient norm
    aux_weight: float = 0.3  # weight of each auxiliary-classifier loss (GoogLeNet, Inception-v3)
    distill: float = 0.0  # weight of the distillation loss when a teacher is given (Hinton et al. 2015)
    distill_temperature: float = 4.0  # softmax temperature of teacher and student in that loss
    amp: bool | None = None  # bf16 autocast; default: on for CUDA
    channels_last: bool | None = None  # default: on for CUDA
    compile: bool = False
    compile_mode: str = "default"  # the torch.compile mode (used with compile)
    seed: int = 0
    deterministic: bool = False
    freeze: str = "none"
    backbone_lr_scale: float = 1.0
    augment: str = "basic"
    pad: int = 4  # pad-and-crop of small images (<= 64 px)
    crop_size: int | None = None  # detection/segmentation: train on random crops of this side, cut from the
    # augmented image at --image-size scale; validation sees whole images (as mmsegmentation's crop_size)
    flip: bool = True  # random horizontal flips (off for digits and text)
    erase: float = 0.0  # random-erasing probability per training image (Zhong et al. 2017); 0 = off
    workers: int | None = None  # DataLoader processes (default: min(8, CPUs - 1)); unused on the fast path
    fast_path: bool = True  # keep in-memory uint8 images on the device and augment whole batches there
    eval_every: int = 1

    def __post_init__(self) -> None:
        """Every field is checked against its declared range (:data:`archzoo.validate.RANGES`)."""
        from ..validate import RANGES, UserError, check_option

        for name, value, allowed in (("opt", self.opt, OPTIMIZERS), ("sched", self.sched, SCHEDULES),
                                     ("freeze", self.freeze, FREEZE), ("augment", self.augment, AUGMENT_RECIPES),
                                     ("compile_mode", self.compile_mode, COMPILE_MODES)):
            if value not in allowed:
                raise UserError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        from ..segmentation.losses import parse_loss

        if self.loss not in PIXEL_LOSSES:  # super-resolution: l2 / l1 (archzoo.engine.super_resolution)
            parse_loss(self.loss)  # a clear error naming the terms
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in RANGES:
                if f.name == "milestones" and not isinstance(value, (list, tuple)):
                    raise UserError(f"milestones must be a list of epochs, got {value!r}")
                check_option(f.name, value)
            elif f.name in _FLAGS and not (isinstance(value, bool) or value is None and f.name in _AUTO_FLAGS):
                raise UserError(f"{f.name} must be True or False{' (or None: automatic)' if f.name in _AUTO_FLAGS else ''}, "
                                f"got {value!r}")
        self.milestones = [float(m) for m in self.milestones]

    def resolved(self) -> "TrainConfig":
        """A copy with every ``None`` default filled in for its optimizer."""
        d = asdict(self)
        if d["lr"] is None:
            d["lr"] = 0.1 * self.batch_size / 128 if self.opt == "sgd" else 1e-3 * self.batch_size / 512
        if d["weight_decay"] is None:
            d["weight_decay"] = 5e-4 if self.opt == "sgd" else 0.05
        if self.sched == "step" and not d["milestones"]:
            d["milestones"] = [0.5 * self.epochs, 0.75 * self.epochs]
        return TrainConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}")
        return cls(**d)
