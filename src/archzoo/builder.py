"""The single funnel every model goes through: ``create_model``.

It looks the name up in the registry, builds the variant with the card's arguments plus the
caller's, adapts the class count and input channels, loads weights (ours, torchvision's or
timm's, a shipped tag), attaches the card, and wraps the model for ``features_only``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from .checkpoint import read_state_dict
from .features import FeatureExtractor
from .registry import get_entry


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    weights: str | Path | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model.

    Args:
        name: a name from :func:`archzoo.list_models`.
        num_classes: classifier outputs (default: the card's); ``0`` removes the classifier.
        in_chans: input channels (default 3).
        features_only: return a :class:`~archzoo.features.FeatureExtractor` giving feature maps.
        out_indices: which of ``model.feature_info`` to return (default: all).
        weights: a ``.safetensors`` checkpoint, a ``.pth``/``.pt``/``.bin`` state dict (ours, or
            torchvision's/timm's, converted), or shipped weights as ``<tag>`` or ``<model>.<tag>``.
        kwargs: architecture arguments overriding the variant's (``drop_rate``, ``drop_path_rate`` ...).
    """
    entry = get_entry(name)
    card = entry.card
    if out_indices is not None and not features_only:
        raise ValueError("out_indices is only meaningful with features_only=True")
    build_kwargs = {**card.kwargs, **kwargs}
    build_kwargs["num_classes"] = card.num_classes if num_classes is None else num_classes
    build_kwargs["in_chans"] = card.input_size[0] if in_chans is None else in_chans
    model = entry.builder(**build_kwargs)
    model.card = card
    model.build_args = {"model": name, "kwargs": _jsonable(kwargs), "num_classes": build_kwargs["num_classes"],
                        "in_chans": build_kwargs["in_chans"]}
    if weights is not None:
        load_weights(model, weights)
    if features_only:
        return FeatureExtractor(model, out_indices)
    return model


def _jsonable(kwargs: dict) -> dict:
    import json

    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise TypeError(f"model arguments must be plain values (numbers, strings, lists): {e}") from None
    return dict(kwargs)


def load_weights(model: nn.Module, weights: str | Path) -> dict:
    """Load ``weights`` into ``model`` (built by :func:`create_model`); return the file's metadata.

    Foreign layouts are recognised by trying the family's converters. A classifier with another
    class count is left freshly initialised (with a warning); first-convolution weights for 3
    channels are adapted to ``in_chans`` (summed for 1 channel, tiled and rescaled otherwise).
    """
    from .hub import resolve_checkpoint
    from .weights import convert_weights, sources_for

    name = model.build_args["model"]
    card = model.card
    path = resolve_checkpoint(weights, model=name)
    state_dict, meta = read_state_dict(path)
    if meta.get("model") not in (None, name):
        raise ValueError(f"{path} holds weights for {meta['model']!r}, not {name!r}")
    ours = model.state_dict()
    state_dict = _drop_absent_aux(model, state_dict)
    if set(state_dict) != set(ours):
        errors = [_key_diff(ours, state_dict, "as archzoo")]
        sources = sorted(sources_for(card.family), key=lambda s: s != card.reference_source)
        for source in sources:
            try:
                converted = convert_weights(name, state_dict, source, check=False)
            except (KeyError, ValueError) as e:
                errors.append(f"as {source}: {e}")
                continue
            converted = _drop_absent_aux(model, converted)
            if set(converted) == set(ours):
                state_dict = converted
                break
            errors.append(_key_diff(ours, converted, f"as {source}"))
        else:
            raise ValueError(f"{path} does not fit {name}: " + "; ".join(errors))
    # auxiliary classifiers (GoogLeNet, Inception-v3) are adapted like the main one
    state_dict = _adapt(model, (card.classifier, *getattr(model, "aux_classifiers", ())), state_dict, path)
    model.load_state_dict(state_dict, strict=True)
    return meta


def _drop_absent_aux(model: nn.Module, state_dict: dict) -> dict:
    """Weights of auxiliary heads are not needed by a model built without them (``aux_logits=False``)."""
    if getattr(model, "aux_heads", "absent") is not None:
        return state_dict
    return {k: v for k, v in state_dict.items() if not k.startswith("aux_heads.")}


def _key_diff(ours: dict, theirs: dict, label: str) -> str:
    missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    return f"{label}: {len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"


def _adapt(model: nn.Module, classifiers: tuple[str, ...], state_dict: dict, path) -> dict:
    ours = model.state_dict()
    out = dict(state_dict)
    head_keys = [k for k in ours if k.startswith(tuple(c + "." for c in classifiers))]
    if any(k not in out or out[k].shape != ours[k].shape for k in head_keys):
        warnings.warn(f"{path}: classifier shape differs from the model's ({model.num_classes} classes); "
                      f"{', '.join(classifiers)} left freshly initialised", stacklevel=3)
        for k in head_keys:
            out[k] = ours[k]
    # only the stem convolution (the first 4-d weight) sees the input channels
    stem = next((k for k, v in ours.items() if v.ndim == 4), None)
    for k, v in out.items():
        want = ours.get(k)
        if want is None or v.shape == want.shape or k in head_keys:
            continue
        if k == stem and v.ndim == 4 and v.shape[0] == want.shape[0] and v.shape[2:] == want.shape[2:]:
            out[k] = adapt_input_conv(v, want.shape[1])
        else:
            raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the model needs {tuple(want.shape)}")
    return out


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt first-conv weights trained on ``weight.shape[1]`` channels to ``in_chans`` channels
    so that a grey image replicated to RGB gives the same response."""
    src = weight.shape[1]
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // src)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (src / in_chans)
