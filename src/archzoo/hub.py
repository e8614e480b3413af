"""Weights that ship inside the package, addressed by ``<model>.<tag>`` (e.g. ``resnet20.cifar10``).

Each entry records the file, the data it was trained on and the accuracy it was measured at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "pretrained"


@dataclass(frozen=True)
class ShippedWeights:
    model: str
    tag: str
    file: str
    dataset: str
    metrics: dict
    recipe: str


SHIPPED: dict[tuple[str, str], ShippedWeights] = {}


def list_shipped() -> list[ShippedWeights]:
    return list(SHIPPED.values())


def shipped_weights_path(model: str, tag: str) -> Path:
    entry = SHIPPED.get((model, tag))
    if entry is None:
        tags = sorted(t for m, t in SHIPPED if m == model)
        raise ValueError(
            f"{tag!r} is neither a weights file nor a shipped tag for {model}; "
            f"shipped tags: {', '.join(tags) if tags else 'none'}"
        )
    return WEIGHTS_DIR / entry.file
