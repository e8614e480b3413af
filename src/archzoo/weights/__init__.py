"""Converting state dicts from other libraries (torchvision, timm) to archzoo's layout.

A converter is registered per ``(arch, source)``: by the architecture the weights are laid out
by (``ModelCard.arch``), not by family name, so two families of one class share a converter and
one family name spanning two architectures (torchvision's Wide ResNets, the CIFAR WRNs) cannot
be offered the other's. Most are a :class:`KeyMap`: an ordered list
of regular-expression renames, readable as a table. Anything a rename cannot express (a reshape,
a split) is a plain function ``fn(state_dict, model_name) -> state_dict``.

:func:`convert_weights` checks the result against the real model: every key must be present,
nothing may be left over, and every shape must match, so a converter that drops or misplaces a
tensor fails loudly instead of loading silently.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass
from typing import Callable

import torch

SOURCES = ("torchvision", "timm", "effdet", "smp")
BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"  # a batch norm's tensors, as a regex group
StateDict = dict[str, torch.Tensor]

_CONVERTERS: dict[tuple[str, str], Callable[[StateDict, str], StateDict]] = {}
_FEATURE_NODES: dict[str, Callable[[str], list[str]]] = {}


@dataclass(frozen=True)
class KeyMap:
    """Ordered ``(pattern, replacement)`` renames; the first pattern that fully matches a key wins.

    A replacement of ``None`` drops the key (for tensors the reference keeps and we do not need).
    A key no pattern matches is an error naming it. ``shift`` renumbers an index after the
    rename: ``(("stages", -1),)`` turns ``stages.1.0...`` into ``stages.0.0...`` for references
    that count from 1.
    """

    rules: tuple[tuple[str, str | None], ...]
    shift: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple((re.compile(p), r) for p, r in self.rules))

    def __call__(self, state_dict: StateDict, model_name: str = "") -> StateDict:
        out: StateDict = {}
        for key, value in state_dict.items():
            for pattern, repl in self._compiled:
                m = pattern.fullmatch(key)
                if m:
                    if repl is not None:
                        out[m.expand(repl)] = value
                    break
            else:
                raise KeyError(f"no conversion rule for key {key!r} (model {model_name or '?'})")
        for prefix, by in self.shift:
            pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)")
            out = {pattern.sub(lambda m: f"{prefix}.{int(m.group(1)) + by}", k): v for k, v in out.items()}
        return out


def register_converter(
    arch: str,
    source: str,
    converter: Callable[[StateDict, str], StateDict],
    feature_nodes: list[str] | Callable[[str], list[str]] | None = None,
) -> None:
    """Register ``converter`` for architecture ``arch`` (a ``ModelCard.arch``) from ``source``.

    ``feature_nodes`` (torchvision only, whose models have no feature API) names the reference's
    graph nodes that correspond to our ``feature_info`` entries, for the features parity tests:
    a list, or a function of the model name.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if (arch, source) in _CONVERTERS:
        raise ValueError(f"a {source} converter for architecture {arch!r} is registered twice")
    _CONVERTERS[(arch, source)] = converter
    if feature_nodes is not None:
        _FEATURE_NODES[arch] = feature_nodes if callable(feature_nodes) else (lambda name, n=list(feature_nodes): n)


def build_reference(reference: str) -> torch.nn.Module:
    """The reference implementation a card names (``"torchvision:NAME"``, ``"timm:NAME"``, ``"effdet:NAME"`` or
    ``"smp:ARCH/ENCODER"``, e.g. ``"smp:Unet/resnet34"``), with random weights: nothing is downloaded. timm, effdet
    and segmentation_models_pytorch are only needed (test dependencies) for their references; an smp model is built
    with ``encoder_weights=None`` and the class count of the card that names it."""
    source, name = reference.split(":", 1)
    if source == "torchvision":
        import torchvision

        if name in torchvision.models.list_models(torchvision.models.detection):  # no backbone download either
            return torchvision.models.get_model(name, weights=None, weights_backbone=None)
        if name in torchvision.models.list_models(torchvision.models.segmentation):  # with its auxiliary head
            aux = {} if name.startswith("lraspp") else {"aux_loss": True}
            return torchvision.models.get_model(name, weights=None, weights_backbone=None, **aux)
        return torchvision.models.get_model(name, weights=None)
    if source == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    if source == "effdet":
        import effdet

        return effdet.create_model(name, pretrained=False, pretrained_backbone=False)
    if source == "smp":
        import segmentation_models_pytorch as smp

        from ..registry import list_models, model_card

        arch, _, encoder = name.partition("/")
        classes = [model_card(n).num_classes for n in list_models() if model_card(n).reference == reference]
        return getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=classes[0] if classes else 1)
    raise ValueError(f"unknown reference source {source!r}")


def reference_feature_nodes(name: str) -> list[str] | None:
    """The torchvision graph nodes matching ``feature_info`` of model ``name`` (None if unknown)."""
    from ..registry import model_card

    _load_family_modules()
    fn = _FEATURE_NODES.get(model_card(name).arch)
    return fn(name) if fn else None


def _load_family_modules() -> None:
    """Import every key-map module in this package (each registers its family's converters)."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def sources_for(arch: str) -> list[str]:
    """The sources with a converter for architecture ``arch`` (a ``ModelCard.arch``)."""
    _load_family_modules()
    return [s for s in SOURCES if (arch, s) in _CONVERTERS]


def convert_weights(name: str, state_dict: StateDict, source: str | None = None, *, check: bool = True) -> StateDict:
    """Convert a ``source`` (``"torchvision"`` or ``"timm"``) state dict of model ``name`` to ours.

    ``source=None`` uses the source of the model card's reference. With ``check`` the result is
    verified against the model (keys and shapes; the classifier may have another class count).
    """
    from ..registry import model_card

    _load_family_modules()
    card = model_card(name)
    source = source or card.reference_source
    if source is None:
        raise ValueError(f"{name} has no reference implementation; pass source='torchvision' or 'timm'")
    converter = _CONVERTERS.get((card.arch, source))
    if converter is None:
        known = sources_for(card.arch)
        raise ValueError(f"no {source} converter for {name} (architecture {card.arch}); known sources: {known or 'none'}")
    out = converter(dict(state_dict), name)
    if check:
        check_state_dict(name, out)
    return out


def expected_shapes(name: str, **kwargs) -> dict[str, torch.Size]:
    """Parameter and buffer shapes of ``create_model(name)``, built on the meta device (no memory)."""
    from ..builder import create_model

    with torch.device("meta"):
        model = create_model(name, **kwargs)
    return {k: v.shape for k, v in model.state_dict().items()}


def check_state_dict(name: str, state_dict: StateDict, **kwargs) -> None:
    """Raise a ``ValueError`` listing missing, unexpected and mis-shaped keys for model ``name``."""
    from ..registry import model_card

    heads = tuple(h + "." for h in model_card(name).heads)
    want = expected_shapes(name, **kwargs)
    missing = sorted(set(want) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(want))
    bad_shape = sorted(
        f"{k}: got {tuple(state_dict[k].shape)}, want {tuple(want[k])}"
        for k in set(want) & set(state_dict)
        if state_dict[k].shape != want[k] and not k.startswith(heads)
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise ValueError(f"state dict does not fit {name}: " + "; ".join(problems))
