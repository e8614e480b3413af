"""The model registry: every network is registered once, under one name, with a model card.

A card describes what an architecture *is* (family, paper, year, the tricks it uses, the
reference implementation its weights convert from, its heads and first convolution); a
:class:`WeightsRecord` says what a set of weights was trained on (classes, input size,
normalisation, metrics, recipe). What a model *measures* (parameters, GFLOPs) is never typed
into a card: ``archzoo.profile`` computes it from the real model.
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

# the last three: graph networks on superpixel graphs (archzoo.graph), image-to-image super-resolution
# (archzoo.superres), image-to-words captioning (archzoo.captioning); style transfer nets are "style_transfer"
TASKS = ("classification", "detection", "segmentation", "graph", "super_resolution", "captioning", "style_transfer")


@dataclass(frozen=True)
class WeightsRecord:
    """What a set of weights was trained on, apart from the architecture that holds them.

    ``dataset`` and ``num_classes`` (``class_names`` where known), the ``input_size`` and the
    normalisation (``mean``/``std``) the images had, what was measured (``metrics``) and how it
    was trained (``recipe``). Every card carries the record of the weights its architecture is
    usually given (the reference's, or the paper's dataset for nets without one): a freshly built
    model takes its default class count and normalisation from there. Weights that ship with the
    package (:mod:`archzoo.weights.shipped`) are records with a ``model``, ``tag`` and ``file``.
    """

    dataset: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    recipe: str = ""
    model: str | None = None
    tag: str | None = None
    file: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("input_size", "mean", "std", "class_names"):
            d[k] = list(d[k])
        return d


IMAGENET = "ImageNet-1k"


@dataclass(frozen=True)
class ModelCard:
    """What a registered architecture *is*; ``tricks`` are names from :mod:`archzoo.tricks`.

    ``arch`` names the architecture its weights are laid out by (families that are one class with
    one more idea share it: ResNet, ResNeXt, Wide ResNet and SE-ResNet are all ``"resnet"``, while
    the CIFAR Wide ResNets are ``"preact_resnet"``); weight converters are keyed by it. ``reference``
    names the implementation our weights convert from and our outputs are checked against, as
    ``"<source>:<name>"`` (``torchvision:resnet50``, ``timm:seresnet50``), or ``None`` when the paper
    is the only reference. ``heads`` are the final layers whose width is the class count, the main
    classifier first, then auxiliary ones (loading weights for another class count re-initialises
    them together). ``input_convs`` are the convolutions that see the input image, the stem's first
    (FractalNet's columns each start with one); their weights are adapted when ``in_chans`` differs. ``input_size`` is the resolution the paper designed the net for and
    ``min_input_size`` the smallest it accepts (tests run there to keep CI fast). ``cam_layer`` is
    the module gradient-based explanations use (``None``: the output of ``forward_features``).
    ``default_weights`` says what the usual weights were trained on (see :class:`WeightsRecord`).
    ``instance_masks``: a detector that also predicts a mask per detection (Mask R-CNN); its
    training and evaluation data are read with per-object masks (``target["masks"]``), which other
    detectors are not given (:func:`archzoo.engine.detection.wants_masks`).
    """

    name: str
    family: str
    year: int
    paper: str
    tricks: tuple[str, ...]
    default_weights: WeightsRecord
    input_convs: tuple[str, ...] = ()
    arch: str = ""
    task: str = "classification"
    reference: str | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)
    min_input_size: tuple[int, int, int] = (3, 32, 32)
    heads: tuple[str, ...] = ("head.fc",)
    cam_layer: str | None = None
    notes: str = ""
    kwargs: dict = field(default_factory=dict)
    instance_masks: bool = False

    def __post_init__(self) -> None:
        unknown = [t for t in self.tricks if t not in TRICKS]
        if unknown:
            raise ValueError(f"model {self.name!r} names unknown tricks {unknown}; add them to archzoo/tricks.py")
        if self.task not in TASKS:
            raise ValueError(f"model {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if self.instance_masks and self.task != "detection":
            raise ValueError(f"model {self.name!r}: instance_masks is for detectors, not a {self.task} model")
        if not self.heads:
            raise ValueError(f"model {self.name!r}: heads must name at least the main classifier")
        if not self.input_convs:
            raise ValueError(f"model {self.name!r}: input_convs must name the convolution(s) that see the input")
        if not self.arch:
            object.__setattr__(self, "arch", self.family)

    @property
    def classifier(self) -> str:
        """The main classifier's final layer."""
        return self.heads[0]

    @property
    def num_classes(self) -> int:
        return self.default_weights.num_classes

    @property
    def mean(self) -> tuple[float, ...]:
        return self.default_weights.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.default_weights.std

    @property
    def reference_source(self) -> str | None:
        return self.reference.split(":", 1)[0] if self.reference else None

    @property
    def reference_name(self) -> str | None:
        return self.reference.split(":", 1)[1] if self.reference else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tricks"] = list(self.tricks)
        d["heads"] = list(self.heads)
        d["default_weights"] = self.default_weights.to_dict()
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


_RECORD_FIELDS = ("dataset", "num_classes", "mean", "std")


def family_card(**common) -> Callable[..., ModelCard]:
    """Return a card factory that fills a family's shared fields; variants pass what differs.

    ``dataset``, ``num_classes``, ``mean`` and ``std`` describe the usual weights, not the
    architecture: the factory puts them in the card's :class:`WeightsRecord` (default: ImageNet-1k
    with 1000 classes at the card's input size and ImageNet normalisation).
    """

    def make(name: str, **fields) -> ModelCard:
        merged = {**common, **fields}
        tricks = tuple(merged.pop("tricks", ())) + tuple(merged.pop("extra_tricks", ()))
        record = {k: merged.pop(k) for k in _RECORD_FIELDS if k in merged}
        merged["default_weights"] = WeightsRecord(
            dataset=record.get("dataset", IMAGENET),
            num_classes=record.get("num_classes", 1000),
            input_size=tuple(merged.get("input_size", (3, 224, 224))),
            mean=tuple(record.get("mean", IMAGENET_MEAN)),
            std=tuple(record.get("std", IMAGENET_STD)),
        )
        return ModelCard(name=name, tricks=tricks, **merged)

    return make


def _ensure_loaded() -> None:
    # importing archzoo.models registers every classifier family, archzoo.detection every detector,
    # archzoo.segmentation every segmenter
    from . import detection, models, segmentation  # noqa: F401

    detection._register_detectors()
    segmentation._register_segmenters()
    from . import superres  # noqa: F401  (super-resolution nets)
    from .style import transformer_net  # noqa: F401  (style transfer nets)
    from . import captioning  # noqa: F401  (image captioning)
    from .graph import _register_graph_models  # graph networks on superpixel graphs

    _register_graph_models()


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
