"""Save a model to one ``.safetensors`` file and rebuild it from that file alone."""

from __future__ import annotations

import os

import torch.nn as nn

from .checkpoint import read_checkpoint, save_tensors


def save_model(model: nn.Module, path: str | os.PathLike, **meta) -> None:
    """Write ``model``'s weights and what is needed to rebuild it (name, arguments, card input
    size and normalisation, plus any ``meta`` such as ``class_names``) atomically to ``path``."""
    from . import __version__
    from .features import FeatureExtractor

    extra = {}
    if isinstance(model, FeatureExtractor):  # its weights: only what it runs; load_model rebuilds it
        extra["out_indices"] = list(model.out_indices)
    if not hasattr(model, "build_args"):
        raise ValueError("save_model needs a model made by archzoo.create_model (it records how to rebuild it)")
    card = model.card
    # rebuild the model as it is now: reset_classifier (and features_only, which resets it to 0)
    # may have changed the class count, and reset_classifier(0) drops auxiliary heads
    build_args = {**model.build_args, "num_classes": getattr(model, "num_classes", model.build_args["num_classes"])}
    if getattr(model, "aux_heads", "absent") is None:
        build_args["kwargs"] = {**build_args["kwargs"], "aux_logits": False}
    info = {
        **build_args,
        **extra,
        "input_size": list(card.input_size),
        "mean": list(card.mean),
        "std": list(card.std),
        "archzoo_version": __version__,
        **meta,
    }
    save_tensors(path, model.state_dict(), info)


def load_model(arg: str | os.PathLike, *, need_head: bool = False, **overrides) -> tuple[nn.Module, dict]:
    """Rebuild a saved model; return it (in eval mode) and the file's metadata.

    ``arg`` is a ``.safetensors`` file written by :func:`save_model` (or by training), or shipped
    weights named ``<model>.<tag>`` (e.g. ``resnet20.cifar10``). A saved ``features_only``
    extractor comes back as one (with its ``out_indices``). ``need_head``: refuse a model without
    its prediction head (a feature extractor, ``num_classes`` 0), as ``eval``/``predict``/``cam`` do.
    ``overrides`` replace saved architecture arguments.

    The names follow one scheme: ``read_*`` (:mod:`archzoo.checkpoint`) return tensors and
    metadata; ``load_*`` build or fill a model (this, :func:`archzoo.builder.load_weights`,
    :func:`archzoo.engine.state.load_training_state`).
    """
    from pathlib import Path

    from .shipped import resolve_checkpoint

    path = resolve_checkpoint(arg)
    is_tag = not Path(arg).expanduser().is_file()
    tensors, meta = read_checkpoint(path) if path.suffix == ".safetensors" else ({}, {})
    if "model" not in meta:
        if is_tag:  # shipped weights stored as a bare state dict: the tag names the model
            from .builder import create_model

            name = str(arg).split(".", 1)[0]
            return create_model(name, weights=path, **overrides).eval(), {"model": name}
        raise ValueError(f"{path} is not an archzoo checkpoint (.safetensors with metadata); "
                         "use archzoo.create_model(name, weights=path) for a bare state dict")
    if need_head and meta.get("out_indices") is not None:
        raise ValueError(f"{path} holds a features_only extractor, which has no prediction head; "
                         "load it with archzoo.load_model")
    if need_head and meta["num_classes"] == 0:
        from .registry import model_card

        card = model_card(meta["model"])
        if card.num_classes == 0:  # no classes by design: a net whose output is a picture (style transfer)
            raise ValueError(f"{path} holds {meta['model']}, a {card.task} net: it outputs pictures, not classes "
                             f"(`archzoo info {meta['model']}` says how to apply it; archzoo.load_model loads it)")
        raise ValueError(f"{path} holds {meta['model']} without a classifier (num_classes 0): it gives "
                         "features, not classes; load it with archzoo.load_model")
    kwargs = {**meta.get("kwargs", {}), **overrides}
    if meta.get("out_indices") is not None:
        kwargs.update(features_only=True, out_indices=meta["out_indices"])
    model = build_with_state(meta["model"], tensors, num_classes=meta["num_classes"], in_chans=meta["in_chans"],
                             source=path, **kwargs)
    model.eval()
    return model, meta


def build_with_state(name: str, state_dict: dict, *, source=None, **kwargs) -> nn.Module:
    """``create_model(name, **kwargs)`` holding ``state_dict`` (strictly), without first initialising
    weights that are about to be overwritten: the model is built on the meta device and the tensors
    are assigned. Models with non-persistent buffers are built normally. The tensors are checked
    first (:func:`archzoo.schema.check_state_dict`); ``source`` (the file) is named in errors."""
    import torch

    from .builder import create_model
    from .schema import check_state_dict
    from .validate import UserError

    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
    except Exception as e:  # whatever a model's constructor raises for arguments that make no sense
        if source is None:
            raise
        extra = {k: v for k, v in kwargs.items() if k not in ("num_classes", "in_chans", "features_only", "out_indices")}
        where = f"metadata field 'kwargs' {extra}" + (f" or 'out_indices' {kwargs['out_indices']}"
                                                      if "out_indices" in kwargs else "")
        raise UserError(f"{source}: {where} does not build {name}: {e}") from None
    state_dict = check_state_dict(model.state_dict(), state_dict, source or f"the state dict for {name}")
    # fresh (aligned) copies: tensors sliced out of a file buffer can take other kernel paths
    model.load_state_dict({k: v.clone() for k, v in state_dict.items()}, strict=True, assign=True)
    # a non-persistent buffer, or a detector's tensors that are not buffers (anchors, strides), stay
    # on the meta device: build those normally
    if model.card.task == "detection" or any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = create_model(name, **kwargs)
        model.load_state_dict(state_dict, strict=True)
    return model
