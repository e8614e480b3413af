"""Style transfer by optimisation — Gatys, Ecker & Bethge, "Image Style Transfer Using
Convolutional Neural Networks", CVPR 2016 (first as arXiv:1508.06576, "A Neural Algorithm of
Artistic Style", 2015).

The picture itself is the parameter: starting from the content photo (or noise), L-BFGS (the
paper's choice) or Adam changes its pixels to lower content loss (features of one deep layer,
VGG-19's relu4_2, close to the photo's) + style loss (Gram matrices of relu1_1..relu5_1 close to
the style picture's) + a small total-variation term. Every picture costs a full optimisation:
hundreds of forward and backward passes through the perceptual network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .perceptual import LossWeights, StyleLoss

OPTIMIZERS = ("lbfgs", "adam")


@dataclass
class GatysConfig:
    steps: int = 300  # loss evaluations (forward + backward passes; L-BFGS's last line search may add a few)
    optimizer: str = "lbfgs"
    lr: float | None = None  # default: 1 for L-BFGS, 0.02 for Adam (pixels in 0..1)
    init: str = "content"  # or "noise"
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)
    log_every: int = 50


def stylize(content: torch.Tensor, loss_fn: StyleLoss, cfg: GatysConfig, log=None) -> tuple[torch.Tensor, dict]:
    """Optimise a picture ``[3, H, W]`` in 0..1; return it and a report (losses, evaluations, seconds)."""
    content = content[None] if content.ndim == 3 else content
    target = loss_fn.content_features(content)
    if cfg.init == "noise":
        g = torch.Generator().manual_seed(cfg.seed)
        x = torch.rand(content.shape, generator=g).to(content)
    else:
        x = content.clone(memory_format=torch.contiguous_format)
    x.requires_grad_(True)
    if cfg.optimizer == "lbfgs":
        opt = torch.optim.LBFGS([x], lr=cfg.lr or 1.0, max_iter=cfg.steps, history_size=50, line_search_fn="strong_wolfe",
                                tolerance_grad=0.0, tolerance_change=0.0)
    else:
        opt = torch.optim.Adam([x], lr=cfg.lr or 0.02)
    history: list[dict] = []
    start = time.perf_counter()

    def closure():
        opt.zero_grad()
        parts = loss_fn(x, target)
        parts["loss"].backward()
        history.append({k: v.detach().item() for k, v in parts.items()})
        n = len(history)
        if log and (n % cfg.log_every == 0 or n == 1):
            log(f"step {n}/{cfg.steps}  loss {history[-1]['loss']:.4f}  content {history[-1]['content']:.4f}  "
                f"style {history[-1]['style']:.4f}")
        return parts["loss"]

    while len(history) < cfg.steps:
        if cfg.optimizer == "lbfgs":
            opt.param_groups[0]["max_iter"] = opt.param_groups[0]["max_eval"] = cfg.steps - len(history)
            before = len(history)
            opt.step(closure)
            if len(history) == before:  # converged: nothing left to do
                break
        else:
            opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        final = {k: float(v) for k, v in loss_fn(x, target).items()}
    report = {"method": "gatys", "optimizer": cfg.optimizer, "evaluations": len(history), "seconds": round(seconds, 2),
              "first": history[0] if history else final, "final": final}
    return x.detach()[0], report
