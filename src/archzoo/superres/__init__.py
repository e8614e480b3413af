"""Single-image super-resolution: SRDenseNet (:mod:`.srdensenet`) and what training, ``archzoo
eval`` and ``archzoo predict`` need around it (:mod:`.data`: photo folders and the built-in
``photos``, bicubic degradation, the Y channel, PSNR/SSIM, whole-image inference).

    archzoo train srdensenet_x4 --data photos --epochs 20 --out runs/sr
    archzoo eval runs/sr/best.safetensors --data photos
    archzoo predict runs/sr/best.safetensors photo.jpg --out sr/ [--reference]

See ``docs/super_resolution.md``.
"""

from __future__ import annotations

from . import srdensenet  # noqa: F401  (registers srdensenet_x4, srdensenet_x2)
from .srdensenet import SRDenseNet

__all__ = ["SRDenseNet"]
