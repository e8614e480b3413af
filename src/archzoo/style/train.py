"""Train a Johnson transformer net for one style, and apply a trained one.

Training pictures are random square crops (and left-right flips) of the content photos, resized
so their shorter side is the crop size; the loss is :class:`~.perceptual.StyleLoss` of the net's
output against the crop (content) and the style picture (style), Adam as in the paper. Every
random draw comes from one seeded ``torch.Generator`` whose state is checkpointed with the
weights, the Adam moments and the losses (``RUN/state.safetensors``), so a resumed run continues
exactly as an uninterrupted one. ``RUN/model.safetensors`` holds the net alone (``save_model``):
``archzoo.load_model`` and ``archzoo stylize --model`` read it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..checkpoint import atomic_write_text, load_training_tensors, read_tensors, save_tensors, training_tensors
from ..validate import UserError, shown
from .images import (
    content_images,
    load_image,
    resize_shorter,
    save_image,
    side_by_side,
    to_tensor,
)
from .perceptual import LossWeights, PerceptualNet, StyleLoss

MODEL = "johnson_transformer_net"


@dataclass
class StyleTrainConfig:
    steps: int = 2000
    batch_size: int = 4
    size: int = 256  # training crops (the paper: 256x256 crops of COCO, 40,000 steps of batch 4)
    style_size: int | None = None  # the style picture's longer side (default: size)
    lr: float = 1e-3
    seed: int = 0
    backbone: str = "vgg16"
    features_weights: str | None = None
    content_layer: str | None = None  # None: the paper's (relu2_2 on VGG)
    style_layers: tuple[str, ...] | None = None  # None: relu1_2, relu2_2, relu3_3, relu4_3 on VGG
    weights: LossWeights = field(default_factory=LossWeights)
    norm: str = "instance"
    checkpoint_every: int = 100


class StyleTrainer:
    """The training loop: ``train_step()`` draws a batch of crops and takes one Adam step."""

    def __init__(self, style: torch.Tensor, photos: list, cfg: StyleTrainConfig):
        from ..builder import create_model

        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.model = create_model(MODEL, norm=cfg.norm)
        self.net = PerceptualNet(cfg.backbone, cfg.content_layer, cfg.style_layers, cfg.features_weights, method="johnson")
        self.loss_fn = StyleLoss(self.net, style, cfg.weights)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.photos = [to_tensor(resize_shorter(p, cfg.size)) for p in photos]
        self.step = 0
        self.losses: list[dict] = []

    def batch(self) -> torch.Tensor:
        g, s, crops = self.gen, self.cfg.size, []
        for i in torch.randint(len(self.photos), (self.cfg.batch_size,), generator=g).tolist():
            p = self.photos[i]
            top = int(torch.randint(p.shape[1] - s + 1, (1,), generator=g))
            left = int(torch.randint(p.shape[2] - s + 1, (1,), generator=g))
            crop = p[:, top:top + s, left:left + s]
            crops.append(crop.flip(-1) if torch.rand(1, generator=g).item() < 0.5 else crop)
        return torch.stack(crops)

    def train_step(self) -> dict:
        self.model.train()
        x = self.batch()
        parts = self.loss_fn(self.model(x), self.loss_fn.content_features(x))
        self.opt.zero_grad()
        parts["loss"].backward()
        self.opt.step()
        self.step += 1
        self.losses.append({k: v.detach().item() for k, v in parts.items()})
        return self.losses[-1]

    # --- checkpoints: weights, Adam moments, generator state, losses (no pickles) ---

    def save(self, path: Path, extra: dict) -> None:
        tensors = training_tensors(self.model, self.opt)
        tensors["generator"] = self.gen.get_state()
        keys = ("loss", "content", "style", "tv")
        tensors["losses"] = torch.tensor([[d[k] for k in keys] for d in self.losses] or torch.empty(0, 4), dtype=torch.float64)
        cfg = asdict(self.cfg)
        save_tensors(path, tensors, {"kind": "style_transfer_training", "step": self.step, "config": cfg, **extra})

    def load(self, path: Path) -> dict:
        tensors, meta = read_tensors(path)
        if meta.get("kind") != "style_transfer_training":
            raise UserError(f"--resume: {shown(path)!r} is not a style training checkpoint")
        saved = meta["config"]
        for key in ("size", "batch_size", "backbone", "features_weights", "content_layer", "style_layers", "norm", "seed"):
            mine = asdict(self.cfg)[key]
            theirs = saved.get(key)
            if (list(theirs) if isinstance(theirs, (list, tuple)) else theirs) != (list(mine) if isinstance(mine, (list, tuple)) else mine):
                raise UserError(f"--resume: the run in {shown(path.parent)!r} was trained with {key}={theirs!r}, not {mine!r}")
        load_training_tensors(self.model, self.opt, tensors)
        self.gen.set_state(tensors["generator"])
        keys = ("loss", "content", "style", "tv")
        self.losses = [dict(zip(keys, row)) for row in tensors["losses"].tolist()]
        self.step = int(meta["step"])
        return meta


def train_style(style_spec: str, data: str, out: str | Path, cfg: StyleTrainConfig, resume: bool = False, log=None) -> dict:
    """Train (or resume) a transformer net for ``style_spec`` on the photos in ``data``; write
    ``model.safetensors``, ``state.safetensors``, ``style.png``, ``preview.png`` and ``report.json``."""
    from ..io import save_model

    out = Path(out)
    style = load_image(style_spec, "--train (the style picture)", cfg.style_size or cfg.size)
    photos = content_images(data)
    trainer = StyleTrainer(style, [p for _, p in photos], cfg)
    state = out / "state.safetensors"
    if resume:
        if not state.is_file():
            raise UserError(f"--resume: no checkpoint {shown(state)!r} to resume from (run once without --resume)")
        saved = trainer.load(state)
        if saved.get("style") != style_spec:
            raise UserError(f"--resume: the run in {shown(out)!r} was trained on style {saved.get('style')!r}, not {style_spec!r}")
    elif state.exists():
        raise UserError(f"--out: {shown(out)!r} already holds a run ({state.name}); pass --resume to continue it "
                        "or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    if trainer.step >= cfg.steps:
        raise UserError(f"--steps: {cfg.steps} is not more than the {trainer.step} steps already trained")
    extra = {"style": style_spec, "data": data}
    start = time.perf_counter()
    while trainer.step < cfg.steps:
        parts = trainer.train_step()
        if trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps:
            trainer.save(state, extra)
            save_model(trainer.model, out / "model.safetensors", input_size=[3, cfg.size, cfg.size], backbone=cfg.backbone, features_weights=cfg.features_weights, **extra)
            if log:
                log(f"step {trainer.step}/{cfg.steps}  loss {parts['loss']:.4f}  content {parts['content']:.4f}  "
                    f"style {parts['style']:.4f}")
    seconds = time.perf_counter() - start
    save_image(style, out / "style.png")
    # a preview: each of up to three photos (centre crops) and its stylised version
    trainer.model.eval()
    shown_photos = [_centre_crop(p, cfg.size) for p in trainer.photos[:3]]
    with torch.no_grad():
        styled = trainer.model(torch.stack(shown_photos))
    save_image(side_by_side([style, *[t for pair in zip(shown_photos, styled) for t in pair]], cfg.size), out / "preview.png")
    first, tail = trainer.losses[0], trainer.losses[-min(20, len(trainer.losses)):]
    mean_tail = {k: sum(d[k] for d in tail) / len(tail) for k in first}
    report = {"style": style_spec, "data": data, "photos": len(photos), "steps": trainer.step, "size": cfg.size,
              "batch_size": cfg.batch_size, "backbone": cfg.backbone, "features_weights": cfg.features_weights,
              "content_layer": trainer.net.content_name, "style_layers": trainer.net.style_names,
              "first_loss": first, "final_loss": mean_tail, "seconds_this_run": round(seconds, 1),
              "model": str(out / "model.safetensors"), "state": str(state),
              "pictures": [str(out / "style.png"), str(out / "preview.png")]}
    if not all(math.isfinite(v) for v in mean_tail.values()):
        report["warning"] = "training diverged (non-finite loss)"
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report


def _centre_crop(p: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (p.shape[1] - size) // 2, (p.shape[2] - size) // 2
    return p[:, top:top + size, left:left + size]


def load_style_model(path: str, option: str = "--model"):
    """A trained transformer net from ``path`` (``model.safetensors`` of a run, or the run folder)."""
    from ..io import load_model

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "model.safetensors"
    if not p.is_file():
        raise UserError(f"{option}: {shown(path)!r} is not a trained style model (no such file; archzoo stylize --train "
                        "writes RUN/model.safetensors)")
    try:
        model, meta = load_model(p)
    except (ValueError, KeyError) as e:
        raise UserError(f"{option}: {shown(path)!r} is not an archzoo checkpoint: {e}") from None
    if getattr(model, "card", None) is None or model.card.task != "style_transfer":
        raise UserError(f"{option}: {shown(path)!r} holds {meta.get('model')}, a {model.card.task} model, not a style "
                        "transfer net")
    return model.eval(), meta


@torch.no_grad()
def apply_model(model, content: torch.Tensor) -> torch.Tensor:
    """Stylise ``[3, H, W]`` (or a batch) in 0..1 in one forward pass."""
    batch = content.ndim == 4
    y = model(content if batch else content[None])
    return y if batch else y[0]
