"""The model registry: every network is registered once, under one name, with a model card.

A card describes what a model *is* (family, paper, year, the tricks it uses, the reference
implementation its weights convert from, its input size and normalisation). What a model
*measures* (parameters, GFLOPs) is never typed into a card: ``archzoo.profile`` computes it
from the real model.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Callable

from .tricks import TRICKS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

TASKS = ("classification", "detection", "segmentation")


@dataclass(frozen=True)
class ModelCard:
    """What a registered model is. ``tricks`` are names from :mod:`archzoo.tricks`.

    ``reference`` names the implementation our weights convert from and our outputs are
    checked against, as ``"<source>:<name>"`` (``torchvision:resnet50``, ``timm:seresnet50``),
    or ``None`` when the paper is the only reference. ``min_input_size`` is the smallest input
    the network accepts; tests run there to keep CI fast. ``cam_layer`` is the module whose
    output gradient-based explanations use (``None``: the output of ``forward_features``).
    ``classifier`` is the module holding the final layer, so loading weights with another
    class count can re-initialise just that part.
    """

    name: str
    family: str
    year: int
    paper: str
    tricks: tuple[str, ...]
    task: str = "classification"
    reference: str | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)
    min_input_size: tuple[int, int, int] = (3, 32, 32)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    classifier: str = "head.fc"
    cam_layer: str | None = None
    notes: str = ""
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [t for t in self.tricks if t not in TRICKS]
        if unknown:
            raise ValueError(f"model {self.name!r} names unknown tricks {unknown}; add them to archzoo/tricks.py")
        if self.task not in TASKS:
            raise ValueError(f"model {self.name!r}: task must be one of {TASKS}, got {self.task!r}")

    @property
    def reference_source(self) -> str | None:
        return self.reference.split(":", 1)[0] if self.reference else None

    @property
    def reference_name(self) -> str | None:
        return self.reference.split(":", 1)[1] if self.reference else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tricks"] = list(self.tricks)
        return d


@dataclass(frozen=True)
class ModelEntry:
    card: ModelCard
    builder: Callable


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(card: ModelCard, builder: Callable) -> Callable:
    """Register ``builder(**kwargs) -> nn.Module`` under ``card.name``. Duplicate names raise."""
    if card.name in _REGISTRY:
        raise ValueError(f"model {card.name!r} is registered twice")
    _REGISTRY[card.name] = ModelEntry(card, builder)
    return builder


def register_variants(builder: Callable, cards: list[ModelCard]) -> None:
    """Register one builder under several cards; each card's ``kwargs`` configure the variant."""
    for card in cards:
        register_model(card, builder)


def family_card(**common) -> Callable[..., ModelCard]:
    """Return a card factory that fills a family's shared fields; variants pass what differs."""

    def make(name: str, **fields) -> ModelCard:
        merged = {**common, **fields}
        tricks = tuple(merged.pop("tricks", ())) + tuple(merged.pop("extra_tricks", ()))
        return ModelCard(name=name, tricks=tricks, **merged)

    return make


def _ensure_loaded() -> None:
    # importing archzoo.models registers every family
    from . import models  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `archzoo models` lists them"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def model_card(name: str) -> ModelCard:
    """The card of a registered model."""
    return get_entry(name).card


def list_models(
    pattern: str | None = None,
    *,
    task: str | None = None,
    trick: str | None = None,
    family: str | None = None,
) -> list[str]:
    """Registered model names, sorted, filtered by fnmatch ``pattern``, task, trick and family."""
    _ensure_loaded()
    if trick is not None and trick not in TRICKS:
        raise KeyError(f"unknown trick {trick!r}; `archzoo info` of any model or archzoo.tricks lists them")
    names = []
    for name, entry in _REGISTRY.items():
        card = entry.card
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        if task and card.task != task:
            continue
        if trick and trick not in card.tricks:
            continue
        if family and card.family != family:
            continue
        names.append(name)
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
