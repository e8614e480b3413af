"""Single-image super-resolution as an engine task: a low-resolution image in, a ``scale`` times
larger one out.

Data are photos (:class:`archzoo.superres.data.PhotoSet`: their Y planes, uint8 ``[1, H, W]``);
every training item becomes a random ``scale * s``-pixel HR patch (``s``: the trainer's input
size, the LR patch side), flipped and turned by quarter turns with the ``basic`` augmentation,
and its LR input is the bicubic degradation of the patch (:func:`~archzoo.superres.data.degrade`).
Validation takes the centre patch of each held-out photo. Batch targets: ``{"hr": [B, 1, S, S],
"bicubic_mse": [B]}`` (the bicubic baseline's error on the same patch, for the meter). Inputs and
outputs are ``Y / 255``. Loss: ``l2`` (the paper's mean squared error) or ``l1``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .metrics import SumMeter, _zeros
from .task import Task

LOSSES = ("l2", "l1")


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))


class PatchTransform:
    """``(Y image, {}) -> (LR patch [1, s, s], {"hr", "bicubic_mse"})`` (see the module doc); a
    plain class so DataLoader workers can receive it."""

    def __init__(self, lr_size: int, scale: int, train: bool, augment: bool):
        self.lr_size, self.scale, self.train, self.augment = lr_size, scale, train, augment

    def __call__(self, image: torch.Tensor, target):
        from ..superres.data import bicubic, degrade
        from ..validate import UserError

        p = self.lr_size * self.scale
        _, h, w = image.shape
        if h < p or w < p:
            raise UserError(f"an image of {h}x{w} pixels is smaller than the {p}x{p} high-resolution patch")
        if self.train:
            top, left = (int(torch.randint(0, n - p + 1, ())) for n in (h, w))
        else:
            top, left = (h - p) // 2, (w - p) // 2
        hr = image[:, top:top + p, left:left + p].float() / 255
        if self.train and self.augment:
            if torch.rand(()) < 0.5:
                hr = hr.flip(-1)
            hr = torch.rot90(hr, int(torch.randint(0, 4, ())), (-2, -1))
        hr, lr = degrade(hr[None], self.scale)
        shave = self.scale
        err = (bicubic(lr, self.scale) - hr)[..., shave:-shave, shave:-shave].pow(2).mean()
        return lr[0], {"hr": hr[0], "bicubic_mse": err}


class SuperResolutionMeter(SumMeter):
    """Mean loss, mean patch PSNR (dB, ``scale`` border pixels shaved) of the model and of bicubic
    upsampling, and the count."""

    def __init__(self, device, scale: int):
        super().__init__({k: _zeros(device, dtype=torch.float64) for k in ("loss", "psnr", "psnr_bicubic")}
                         | {"count": _zeros(device), "loss_count": _zeros(device)})
        self.scale = scale

    def update(self, output, target, loss):
        hr, s = target["hr"], self.scale
        n = len(hr)
        mse = (output.detach().float().clamp(0, 1) - hr)[..., s:-s, s:-s].pow(2).flatten(1).mean(1)
        self.sums["psnr"] += _psnr(mse).sum().double()
        self.sums["psnr_bicubic"] += _psnr(target["bicubic_mse"]).sum().double()
        self.sums["count"] += n
        if loss is not None:
            self.sums["loss"] += (loss.detach() * n).double()
            self.sums["loss_count"] += n

    def running(self):
        return {"loss": self.sums["loss"] / self.sums["loss_count"].clamp(min=1),
                "psnr": self.sums["psnr"] / self.sums["count"].clamp(min=1)}

    def summarize(self, s):
        n = max(int(s["count"]), 1)
        out = {"psnr": float(s["psnr"]) / n, "psnr_bicubic": float(s["psnr_bicubic"]) / n, "count": int(s["count"])}
        if int(s["loss_count"]):
            out["loss"] = float(s["loss"]) / int(s["loss_count"])
        return out


class SuperResolutionTask(Task):
    """Patches of photos, an ``l2``/``l1`` pixel loss, PSNR against bicubic (see the module doc).
    The validation loss is the training loss on the validation patches."""

    name = "super_resolution"
    monitor, monitor_mode = "psnr", "max"
    train_fields = ("loss", "psnr")
    val_fields = ("loss", "psnr", "psnr_bicubic")

    def __init__(self, scale: int, loss: str = "l2"):
        from ..validate import UserError

        super().__init__(0, [])
        if loss not in LOSSES:
            raise UserError(f"loss {loss!r}: a super-resolution net trains on {' or '.join(LOSSES)} (--loss)")
        self.scale, self.loss_name = scale, loss
        self._validating = False

    # --- batches --------------------------------------------------------------------------------
    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        return PatchTransform(input_size, self.scale, train, augment=cfg.augment == "basic")

    @staticmethod
    def collate(samples):
        return (torch.stack([x for x, _ in samples]),
                {"hr": torch.stack([t["hr"] for _, t in samples]),
                 "bicubic_mse": torch.stack([t["bicubic_mse"] for _, t in samples])})

    # --- a step ---------------------------------------------------------------------------------
    def loss(self, output, targets):
        out, hr = output.float(), targets["hr"]
        return F.mse_loss(out, hr) if self.loss_name == "l2" else F.l1_loss(out, hr)

    def meter(self, device, train):
        return _ValidationMeter(self, device) if not train else SuperResolutionMeter(device, self.scale)

    # --- the end of a run ----------------------------------------------------------------------
    def report(self, run_dir, model, metrics, data, preprocess):
        """``predictions.png``: bicubic | model | original for the first held-out patches."""
        if data is None or not len(data):
            return []
        from ..superres.report import patch_grid

        device = next(model.parameters()).device
        tf = PatchTransform(preprocess.size, self.scale, train=False, augment=False)
        samples = [tf(*data[i]) for i in range(min(4, len(data)))]
        lr = torch.stack([x for x, _ in samples]).to(device)
        hr = torch.stack([t["hr"] for _, t in samples])
        with torch.no_grad():
            sr = model.eval()(lr).float().clamp(0, 1).cpu()
        return [patch_grid(lr.cpu(), sr, hr, self.scale, Path(run_dir) / "predictions.png")]

    def eval_result(self, metrics):
        return dict(metrics)

    def eval_tables(self, metrics):
        rows = [[k, f"{v:.4f}" if isinstance(v, float) else str(v)] for k, v in metrics.items()
                if isinstance(v, (int, float))]
        return [(None, ["metric", "value"], rows)]


class _ValidationMeter(SuperResolutionMeter):
    """The validation meter computes the loss itself (the trainer passes none in evaluation)."""

    def __init__(self, task: SuperResolutionTask, device):
        super().__init__(device, task.scale)
        self.task = task

    def update(self, output, target, loss):
        super().update(output, target, self.task.loss(output, target).detach() if loss is None else loss)
