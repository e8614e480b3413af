"""Growing neural cellular automata — Mordvintsev, Randazzo, Niklasson & Levin, "Growing Neural
Cellular Automata", Distill 2020 (doi:10.23915/distill.00023).

Every cell of a grid holds a 16-channel state: RGBA (alpha > 0.1 means "alive") and 12 hidden
channels. One step, the same for every cell:

1. perception: each channel convolved (depthwise, fixed) with the identity and the Sobel-x and
   Sobel-y kernels -> 48 numbers per cell, what a cell "sees" of its 3x3 neighbourhood;
2. update: a per-cell network (1x1 convolutions 48 -> 128 -> ReLU -> 16, the last one
   zero-initialised so training starts from "do nothing") gives a state increment;
3. stochastic update: each cell applies its increment with probability ``fire_rate`` (0.5), so
   there is no global clock;
4. alive masking: cells with no alive cell (alpha > 0.1) in their 3x3 neighbourhood before and
   after the step are set to zero.

Training grows the target from a single seed cell. The paper's "persistent" and "regenerating"
experiments are here: a sample pool of states (1024 in the paper; small by default on a CPU),
from which each batch is drawn, the highest-loss sample replaced by the seed, the lowest-loss ones
damaged (a random disc erased), and the results written back, so the rule learns to keep and
regrow the pattern, not only to grow it once. Loss: mean squared error of the RGBA channels
against the (premultiplied-alpha) target. Gradients are normalised per parameter (the paper's
trick for stable training through many steps).

Everything random draws from one seeded ``torch.Generator`` whose state is checkpointed with the
weights, optimizer and pool, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import (atomic_write, atomic_write_text, load_training_tensors, read_tensors, save_tensors,
                         training_tensors)
from .validate import UserError

CHANNELS = 16
ALIVE_THRESHOLD = 0.1
BUILTIN_TARGETS = ("smiley", "heart")


def perception_kernels() -> torch.Tensor:
    """The three fixed 3x3 kernels: identity, Sobel-x and Sobel-y (both divided by 8)."""
    identity = torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]])
    sobel_x = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
    return torch.stack([identity, sobel_x, sobel_x.T])


def perceive(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, 3C, H, W]``: per channel c, (identity, d/dx, d/dy) at 3c, 3c+1, 3c+2."""
    c = x.shape[1]
    weight = perception_kernels().to(x).repeat(c, 1, 1).unsqueeze(1)  # [3C, 1, 3, 3]
    return F.conv2d(x, weight, padding=1, groups=c)


def alive_mask(x: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` bool: some cell of the 3x3 neighbourhood has alpha > 0.1."""
    return F.max_pool2d(x[:, 3:4], 3, stride=1, padding=1) > ALIVE_THRESHOLD


class GrowingNCA(nn.Module):
    """The per-cell update rule; ``forward(x, steps)`` runs it ``steps`` times."""

    def __init__(self, channels: int = CHANNELS, hidden: int = 128, fire_rate: float = 0.5):
        super().__init__()
        self.channels, self.fire_rate = channels, fire_rate
        self.update = nn.Sequential(nn.Conv2d(3 * channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1, bias=False))
        nn.init.zeros_(self.update[2].weight)  # start as the identity map: "do nothing"

    def step(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        pre = alive_mask(x)
        dx = self.update(perceive(x))
        fire = torch.rand(x.shape[0], 1, *x.shape[2:], generator=generator, device=x.device) <= self.fire_rate
        x = x + dx * fire
        return x * (pre & alive_mask(x))

    def forward(self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
        for _ in range(steps):
            x = self.step(x, generator)
        return x


def seed_state(size: int, batch: int = 1, channels: int = CHANNELS) -> torch.Tensor:
    """All zeros but the centre cell, whose alpha and hidden channels are 1."""
    x = torch.zeros(batch, channels, size, size)
    x[:, 3:, size // 2, size // 2] = 1.0
    return x


def damage(x: torch.Tensor, generator: torch.Generator | None = None, radius: float = 0.2) -> torch.Tensor:
    """Erase a disc of ``radius`` (a fraction of the grid) at a random place in each state."""
    b, _, h, w = x.shape
    centre = torch.rand(b, 2, 1, 1, generator=generator) * 0.5 + 0.25  # somewhere in the middle half
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    inside = (yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2 < radius ** 2
    return x * (~inside).unsqueeze(1).to(x)


# --- targets -------------------------------------------------------------------------------------


def _premultiplied(rgba: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(rgba.astype(np.float32) / 255.0).permute(2, 0, 1)
    t[:3] *= t[3:4]
    return t


def builtin_target(name: str, size: int) -> torch.Tensor:
    """A target drawn by code, premultiplied RGBA ``[4, size, size]`` with a transparent margin."""
    from PIL import Image, ImageDraw

    big = 4 * size  # draw large, downsample smoothly
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    m = big // 5  # margin: room to grow and regrow
    if name == "smiley":
        d.ellipse([m, m, big - m, big - m], fill=(250, 200, 30, 255), outline=(200, 100, 0, 255), width=big // 40)
        e = (big - 2 * m) // 9
        for cx in (big // 2 - 2 * e, big // 2 + 2 * e):
            d.ellipse([cx - e, big // 2 - 2 * e - e, cx + e, big // 2 - e], fill=(60, 30, 10, 255))
        d.arc([big // 2 - 3 * e, big // 2 - e, big // 2 + 3 * e, big // 2 + 3 * e], 20, 160, fill=(180, 30, 30, 255), width=e)
    elif name == "heart":
        r = (big - 2 * m) // 4
        d.ellipse([m, m, m + 2 * r, m + 2 * r], fill=(220, 30, 60, 255))
        d.ellipse([big - m - 2 * r, m, big - m, m + 2 * r], fill=(220, 30, 60, 255))
        d.polygon([(m + r // 5, m + int(1.4 * r)), (big - m - r // 5, m + int(1.4 * r)), (big // 2, big - m)], fill=(220, 30, 60, 255))
    else:
        raise UserError(f"--target: {name!r} is neither an image file nor a built-in target ({', '.join(BUILTIN_TARGETS)})")
    img = img.resize((size, size), Image.LANCZOS)
    return _premultiplied(np.asarray(img))


def load_target(spec: str, size: int) -> torch.Tensor:
    """An image file (any format PIL reads; transparency kept, fitted into the grid with a margin)
    or a built-in name -> premultiplied RGBA ``[4, size, size]``."""
    if spec in BUILTIN_TARGETS:
        return builtin_target(spec, size)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"--target: {spec!r} is neither an image file nor a built-in target ({', '.join(BUILTIN_TARGETS)})")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGBA")
            inner = max(4, size - 2 * max(2, size // 8))
            im.thumbnail((inner, inner), Image.LANCZOS)
            canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
            canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"--target: cannot read {spec!r} as an image ({e})") from None
    t = _premultiplied(np.asarray(canvas))
    if t[3].max() <= ALIVE_THRESHOLD:
        raise UserError(f"--target: {spec!r} is fully transparent: there is nothing to grow")
    return t


# --- training ------------------------------------------------------------------------------------


@dataclass
class NCAConfig:
    size: int = 40
    steps: int = 2000  # training iterations (optimizer steps)
    seed: int = 0
    pool_size: int = 256  # the paper: 1024
    batch_size: int = 8
    min_iters: int = 64  # CA steps per training iteration, drawn in [min_iters, max_iters]
    max_iters: int = 96
    damaged: int = 3  # lowest-loss samples of a batch damaged (the paper: 3 of 8)
    damage_after: int = 0  # damage only once training has run this many iterations
    lr: float = 2e-3
    lr_drop_at: int = 2000  # the paper: 2e-3, x0.1 after 2000 iterations
    fire_rate: float = 0.5
    hidden: int = 128
    checkpoint_every: int = 100


def _lr(cfg: NCAConfig, step: int) -> float:
    return cfg.lr * (0.1 if step >= cfg.lr_drop_at else 1.0)


def _rgba_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error of the RGBA channels."""
    return (x[:, :4] - target).square().flatten(1).mean(1)


class NCATrainer:
    """The pool-based training loop of the paper, checkpointed to ``out/nca.safetensors``."""

    def __init__(self, target: torch.Tensor, cfg: NCAConfig):
        self.cfg, self.target = cfg, target
        torch.manual_seed(cfg.seed)
        self.model = GrowingNCA(CHANNELS, cfg.hidden, cfg.fire_rate)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.pool = seed_state(cfg.size, cfg.pool_size)
        self.step = 0
        self.losses: list[float] = []

    def train_step(self) -> float:
        cfg, g = self.cfg, self.gen
        idx = torch.randperm(cfg.pool_size, generator=g)[: cfg.batch_size]
        x = self.pool[idx].clone()
        with torch.no_grad():
            order = _rgba_mse(x, self.target).argsort(descending=True)
        idx, x = idx[order], x[order]
        x[:1] = seed_state(cfg.size)  # the worst sample starts again from the seed
        if cfg.damaged and self.step >= cfg.damage_after:
            x[-cfg.damaged:] = damage(x[-cfg.damaged:], g)  # the best ones are damaged
        iters = int(torch.randint(cfg.min_iters, cfg.max_iters + 1, (1,), generator=g))
        for group in self.opt.param_groups:
            group["lr"] = _lr(cfg, self.step)
        out = self.model(x, iters, g)
        loss = _rgba_mse(out, self.target).mean()
        self.opt.zero_grad()
        loss.backward()
        for p in self.model.parameters():  # per-parameter gradient normalisation
            if p.grad is not None:
                p.grad /= p.grad.norm() + 1e-8
        self.opt.step()
        self.pool[idx] = out.detach()
        self.step += 1
        self.losses.append(loss.item())
        return self.losses[-1]

    # --- checkpoints: weights, optimizer moments, pool, generator state, losses (no pickles) ---

    def save(self, path: Path) -> None:
        tensors = training_tensors(self.model, self.opt)
        tensors["pool"] = self.pool
        tensors["generator"] = self.gen.get_state()
        tensors["losses"] = torch.tensor(self.losses, dtype=torch.float64)
        save_tensors(path, tensors, {"kind": "nca", "step": self.step, "config": asdict(self.cfg)})

    def load(self, path: Path) -> None:
        tensors, meta = read_tensors(path)
        if meta.get("kind") != "nca":
            raise UserError(f"--resume: {str(path)!r} is not an NCA checkpoint")
        saved = NCAConfig(**meta["config"])
        for key in ("size", "pool_size", "batch_size", "hidden", "seed"):
            if getattr(saved, key) != getattr(self.cfg, key):
                raise UserError(f"--resume: the checkpoint {str(path)!r} was trained with {key}={getattr(saved, key)}, "
                                f"not {getattr(self.cfg, key)}")
        load_training_tensors(self.model, self.opt, tensors)
        self.pool = tensors["pool"].clone()
        self.gen.set_state(tensors["generator"])
        self.losses = tensors["losses"].tolist()
        self.step = int(meta["step"])


# --- pictures ------------------------------------------------------------------------------------


def to_rgb(x: torch.Tensor, scale: int = 4) -> np.ndarray:
    """A state ``[C, H, W]`` -> uint8 RGB on white (premultiplied alpha), upscaled ``scale`` times."""
    rgb = 1.0 - x[3:4].clamp(0, 1) + x[:3].clamp(0, 1)
    img = (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return img.repeat(scale, 0).repeat(scale, 1)


def save_pictures(frames: list[np.ndarray], png: Path, gif: Path, duration_ms: int = 80) -> None:
    """The frames side by side (a PNG strip) and as an animated GIF, both written atomically."""
    from PIL import Image

    gap = np.full((frames[0].shape[0], 2, 3), 255, np.uint8)
    strip = np.concatenate([p for f in frames for p in (f, gap)][:-1], axis=1)
    atomic_write(png, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))
    images = [Image.fromarray(f) for f in frames]
    atomic_write(gif, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                 duration=duration_ms, loop=0))


@torch.no_grad()
def grow_and_regrow(model: GrowingNCA, target: torch.Tensor, steps: int, frames: int = 8, seed: int = 0):
    """Grow from the seed for ``steps`` CA steps, damage (erase a disc), regrow for ``steps`` more.
    Returns (growth frames, regrowth frames, MSE after growth, MSE after regrowth)."""
    g = torch.Generator().manual_seed(seed)
    size = target.shape[-1]
    every = max(1, steps // frames)
    x = seed_state(size)
    growth = [x[0].clone()]
    for t in range(1, steps + 1):
        x = model.step(x, g)
        if t % every == 0:
            growth.append(x[0].clone())
    grown_error = _rgba_mse(x, target).item()
    x = damage(x, g, radius=0.25)
    regrowth = [x[0].clone()]
    for t in range(1, steps + 1):
        x = model.step(x, g)
        if t % every == 0:
            regrowth.append(x[0].clone())
    return growth, regrowth, grown_error, _rgba_mse(x, target).item()


def run_nca(target_spec: str, out: str | Path, cfg: NCAConfig, resume: bool = False, log=None) -> dict:
    """Train (or resume) on ``target_spec``, write checkpoints, pictures and ``report.json`` to ``out``."""
    out = Path(out)
    target = load_target(target_spec, cfg.size)
    trainer = NCATrainer(target, cfg)
    ckpt = out / "nca.safetensors"
    if resume:
        if not ckpt.is_file():
            raise UserError(f"--resume: no checkpoint {str(ckpt)!r} to resume from (run once without --resume)")
        trainer.load(ckpt)
    elif ckpt.exists():
        raise UserError(f"--out: {str(out)!r} already holds a run ({ckpt.name}); pass --resume to continue it "
                        "or choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    while trainer.step < cfg.steps:
        loss = trainer.train_step()
        if trainer.step % cfg.checkpoint_every == 0 or trainer.step == cfg.steps:
            trainer.save(ckpt)
            if log:
                log(f"step {trainer.step}/{cfg.steps}  loss {loss:.5f}")
    if not trainer.losses:
        raise UserError(f"--steps: {cfg.steps} is not more than the {trainer.step} steps already trained")
    grow_steps = cfg.max_iters
    growth, regrowth, grown, regrown = grow_and_regrow(trainer.model, target, grow_steps, seed=cfg.seed)
    save_pictures([to_rgb(f) for f in growth], out / "growth.png", out / "growth.gif")
    save_pictures([to_rgb(f) for f in regrowth], out / "regrowth.png", out / "regrowth.gif")
    from PIL import Image

    atomic_write(out / "target.png", lambda tmp: Image.fromarray(to_rgb(target)).save(tmp, format="PNG"))
    tail = trainer.losses[-min(20, len(trainer.losses)):]
    report = {
        "target": target_spec, "steps": trainer.step, "size": cfg.size,
        "first_loss": trainer.losses[0], "final_loss": sum(tail) / len(tail),
        "growth_error": grown, "regrowth_error": regrown, "ca_steps": grow_steps,
        "checkpoint": str(ckpt), "pictures": [str(out / n) for n in ("growth.png", "growth.gif", "regrowth.png", "regrowth.gif")],
    }
    if not all(math.isfinite(v) for v in (report["final_loss"], grown, regrown)):
        report["warning"] = "training diverged (non-finite loss)"
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report
