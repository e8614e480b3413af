"""``archzoo.train(...)``: one call from a model name and a dataset to a trained run folder.

    import archzoo
    summary = archzoo.train("resnet20", "digits", epochs=30, out="runs/r20")
    summary["val_accuracy"]

The same function backs ``archzoo train``; ``resume="runs/r20"`` continues a run from its
folder alone (the model, data and recipe are read from its ``state.safetensors``).
"""

from __future__ import annotations

import warnings
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn as nn

from ..validate import (UserError, check_input_size, check_option, check_writable_dir, plain_text_pictures,
                        resolve_device, shown)
from . import distributed as dist
from .config import TrainConfig
from .state import STATE_FILE
from .trainer import Trainer, seed_everything


def _limit(ds, n: int | None, seed: int):
    """A seeded random subset of ``n`` items (in source order), for quick runs."""
    if ds is None or n is None or n >= len(ds):
        return ds
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    return ds.subset(torch.sort(idx).values)


def load_training_data(data, *, val_data=None, val_split: float = 0.1, image_size: int | None = None,
                       skip_bad: bool = False, seed: int = 0, train_limit: int | None = None,
                       val_limit: int | None = None, task: str | None = None, masks: bool = False):
    """``(train, val, class_names, bad_files)`` from a spec (see :func:`archzoo.data.load_dataset`),
    a :class:`DatasetSplits` or a dataset. ``val_data``, when given, replaces the held-out split
    (a segmentation set's masks are read with the training set's map of values to classes).
    ``task``: the model's, for data that holds sets of several tasks (a VOC root); ``masks``: read
    a detection set's instance masks too (for a detector that predicts them)."""
    from ..data import DatasetSplits, load_dataset

    bad = []
    if isinstance(data, (str, Path)):
        splits = load_dataset(data, val_split=0.0 if val_data is not None else val_split, seed=seed,
                              skip_bad=skip_bad, image_size=image_size, task=task, masks=masks)
        bad = splits.bad_files
    elif isinstance(data, DatasetSplits):
        splits = data
    else:
        splits = DatasetSplits(train=data, val=None, class_names=list(data.class_names))
    train, val, names = splits.train, splits.val, [shown(n) for n in splits.class_names]
    if isinstance(val_data, (str, Path)):
        value_map = getattr(train, "value_map", None)
        vsplits = load_dataset(val_data, val_split=0.0, subset="val" if Path(str(val_data)).is_dir() else "test",
                               skip_bad=skip_bad, image_size=image_size, task=task, class_map=value_map,
                               masks=masks)
        val, bad = vsplits.train, bad + vsplits.bad_files
        if getattr(val, "task", None) == "captioning":  # its words in the training vocabulary (others: <unk>)
            from ..data.captions import match_vocabulary

            val = match_vocabulary(val, splits.class_names)
        elif [shown(n) for n in vsplits.class_names] != list(names):
            raise ValueError(f"validation classes {[shown(n) for n in vsplits.class_names]} differ from training "
                             f"classes {names}")
    elif val_data is not None:
        val = val_data
    return _limit(train, train_limit, seed), _limit(val, val_limit, seed + 1), list(names), bad


SKIPPED_FILE = "skipped_files.txt"


def _check_arguments(*, val_split, image_size, train_limit, val_limit, log, device, model_kwargs) -> None:
    """The arguments of :func:`train` that are not recipe options, by their declared ranges."""
    for name, value in (("val_split", val_split), ("image_size", image_size), ("train_limit", train_limit),
                        ("val_limit", val_limit)):
        check_option(name, value)
    if log not in ("bar", "json", "quiet"):
        raise UserError(f"log must be one of bar, json, quiet, got {log!r}")
    resolve_device(device, option="device")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise UserError(f"model_kwargs must be a dict of architecture arguments, got {model_kwargs!r}")
    for key in ("drop_rate", "drop_path_rate"):
        if key in (model_kwargs or {}):
            check_option(key, model_kwargs[key])


def _check_classes(class_names: list[str], data, bad: list, task: str = "classification", train_ds=None) -> None:
    """Class names are unique; a classifier needs two classes or more (one cannot be wrong, and
    would report 100% accuracy), and a training set that shows it two."""
    dup = sorted({n for n in class_names if class_names.count(n) > 1})
    if dup:
        raise UserError(f"the data names the classes {dup[:5]} more than once; class names must be unique")
    if task == "classification" and len(class_names) < 2:
        where = shown(data) if isinstance(data, (str, Path)) else "the data"
        found = f"only one class ({shown(class_names[0])!r})" if class_names else "no class"
        why = ""
        dropped = [shown(p) for p, reason in bad if "class folder" in reason]
        if dropped:
            why = f"; skip_bad (--skip-bad) dropped {len(dropped)} class folders without a readable image: " + \
                ", ".join(dropped[:5])
        raise UserError(f"{where} has {found}: a classifier needs at least two classes (one folder per class)" + why)
    labels = getattr(train_ds, "labels", None)
    if task == "classification" and labels is not None and len(labels) and len(torch.unique(labels)) < 2:
        only = class_names[int(labels[0])] if int(labels[0]) < len(class_names) else int(labels[0])
        raise UserError(f"the training set holds images of one class only ({shown(only)!r}); a classifier learns "
                        "nothing from it: raise train_limit (--train-limit) or add images of the other classes")


def _class_map(ds) -> dict:
    """``{"class_map": ...}``: a segmentation set's map from mask values to classes, for the
    checkpoint (eval reads new masks with it, predict writes masks in the original values)."""
    value_map = getattr(ds, "value_map", None)
    return {"class_map": value_map.to_json()} if value_map is not None else {}


def _model_task(model) -> str | None:
    """The task on the card of a model name or a zoo model, else ``None`` (the data says)."""
    if isinstance(model, str):
        from ..registry import model_card

        try:
            return model_card(model).task
        except (KeyError, ValueError):  # an unknown name: create_model says so, with suggestions
            return None
    return getattr(getattr(model, "card", None), "task", None)


def _check_input_size(model, image_size: int | None, train_ds, crop_size: int | None = None) -> None:
    """The input side the trainer will use (``image_size``, else the in-memory images', else the
    card's), and the training crops' side (``crop_size``), must reach the model card's smallest input."""
    from ..registry import model_card

    card = model_card(model) if isinstance(model, str) else getattr(model, "card", None)
    if card is None:
        return
    images = getattr(train_ds, "images", None)
    low = getattr(card, "min_input_size", None)
    if crop_size is not None and low is not None and crop_size < max(low[-2:]):
        raise UserError(f"{card.name} needs inputs of at least {low[-2]}x{low[-1]} pixels (its smallest input), but "
                        f"crop_size (--crop-size) {crop_size} would train it on {crop_size}x{crop_size} crops; use a "
                        f"crop size of at least {max(low[-2:])}")
    if image_size is not None:
        check_input_size(card, image_size, hint=" (image_size / --image-size)")
    elif images is not None:
        h, w = images.shape[-2:]
        check_input_size(card, int(w), hint=f" (the images are {h}x{w} pixels and are used at their size)")


def _write_skipped(out: Path, bad: list) -> None:
    from ..checkpoint import atomic_write_text

    lines = [f"{shown(f)}\t{shown(r)}" for f, r in bad]
    atomic_write_text(out / SKIPPED_FILE, "# files and folders skipped as unreadable (--skip-bad): path<TAB>reason\n"
                      + "\n".join(lines) + "\n")


def _load_teacher(teacher, class_names: list[str]) -> nn.Module:
    """The distillation teacher from a checkpoint or ``model.tag``; its classes must be ours, in order."""
    from ..io import load_model

    model, meta = load_model(teacher, need_head=True)
    theirs = meta.get("class_names")
    if theirs is None:
        if model.num_classes != len(class_names):
            raise ValueError(f"teacher {teacher} has {model.num_classes} classes, the data {len(class_names)}")
    elif list(theirs) != list(class_names):
        raise ValueError(f"teacher {teacher} was trained on classes {list(theirs)}, the data has {class_names}")
    return model


def _teacher_spec(teacher) -> str | None:
    """How the run remembers its teacher for --resume: a file as an absolute path, or a tag."""
    if teacher is None:
        return None
    path = Path(teacher).expanduser()
    return str(path.resolve()) if path.is_file() else str(teacher)


def train(model: str | nn.Module | None = None, data=None, *, out: str | Path | None = None, val_data=None,
          resume: str | Path | None = None, init: str | Path | None = None, model_kwargs: dict | None = None,
          val_split: float = 0.1, image_size: int | None = None, skip_bad: bool = False,
          train_limit: int | None = None, val_limit: int | None = None, log: str = "bar",
          tensorboard: bool = False, device: str | None = None, overwrite: bool = False,
          teacher: str | Path | None = None, **options) -> dict:
    """Train ``model`` (a registered name, or a module made by :func:`archzoo.create_model`) on
    ``data`` and return the run's summary (metrics per epoch under ``"history"``).

    Args:
        data: ``"digits"``, ``"shapes"``, a folder (ImageFolder, CIFAR batches, MNIST IDX), a
            :class:`~archzoo.data.DatasetSplits` or an :class:`~archzoo.data.ImageDataset`.
        out: the run folder (checkpoints, metrics, pictures); ``None`` writes nothing.
        val_data: a separate validation set; otherwise ``val_split`` of ``data`` is held out.
        resume: a run folder to continue; its recipe, model and data spec are reused and
            ``options`` given here override them (e.g. more ``epochs``).
        init: initial weights: our checkpoint, a torchvision/timm state dict, or ``model.tag``
            of shipped weights; a classifier of another class count is re-initialised.
        model_kwargs: architecture arguments (``drop_rate``, ``drop_path_rate`` ...).
        image_size: the model input side (default: the data's, for in-memory sets, else the card's).
        train_limit, val_limit: train / validate on a seeded random subset of that many images.
        teacher: a trained classifier of the same classes (our checkpoint or ``model.tag``) to
            distil from (Hinton et al. 2015); ``distill`` weighs its loss (default 0.5 with a teacher).
        options: :class:`~archzoo.engine.config.TrainConfig` fields (``epochs``, ``lr``, ``opt``,
            ``sched``, ``ema``, ``mixup`` ...).
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown training options {unknown}; see archzoo.engine.TrainConfig")
    _check_arguments(val_split=val_split, image_size=image_size, train_limit=train_limit, val_limit=val_limit,
                     log=log, device=device, model_kwargs=model_kwargs)
    saved = {}
    if resume is not None:
        from ..checkpoint import read_metadata
        from .state import check_state_meta

        out = Path(resume)
        state_path = out / STATE_FILE
        if not state_path.is_file():
            raise FileNotFoundError(f"cannot resume {out}: it has no {STATE_FILE} (was it written by archzoo train?)")
        saved = check_state_meta(read_metadata(state_path), state_path)
        run = saved.get("run", {})
        model = model if model is not None else run.get("model")
        if isinstance(model, str) and run.get("model") not in (None, model):
            raise ValueError(f"{out} is a run of {run.get('model')}, not {model}")
        data = data if data is not None else run.get("data")
        if data is None:
            raise ValueError(f"{out} was trained on in-memory data; pass the same data to resume it")
        model_kwargs = model_kwargs if model_kwargs is not None else run.get("model_kwargs")
        d = run.get("data_options", {})
        val_split, image_size, skip_bad = d.get("val_split", val_split), d.get("image_size", image_size), d.get("skip_bad", skip_bad)
        train_limit, val_limit = d.get("train_limit", train_limit), d.get("val_limit", val_limit)
        val_data = val_data if val_data is not None else run.get("val_data")
        teacher = teacher if teacher is not None else run.get("teacher")
        options = {**saved.get("recipe", {}), **options}
    elif out is not None and (Path(out) / STATE_FILE).exists() and not overwrite:
        raise ValueError(f"{out} already holds a run; continue it with --resume {out}, or pass --overwrite")
    if model is None or data is None:
        raise ValueError("train needs a model and data (or resume=RUN_DIR)")
    if out is not None:
        check_writable_dir(out, "--resume" if resume is not None else "out (--out)")
    if teacher is not None and "distill" not in options:
        options = {**options, "distill": 0.5}
    cfg = TrainConfig.from_dict(options)
    if cfg.distill > 0 and teacher is None:
        raise ValueError(f"distill={cfg.distill} needs a teacher (a trained checkpoint of the same classes)")

    we_started = dist.launched() and not dist.enabled()
    dist.setup(device)
    try:
        from .detection import has_masks, wants_masks

        masks = wants_masks(model)
        train_ds, val_ds, class_names, bad = load_training_data(
            data, val_data=val_data, val_split=val_split, image_size=image_size, skip_bad=skip_bad,
            seed=cfg.seed, train_limit=train_limit, val_limit=val_limit, task=_model_task(model), masks=masks)
        if masks and getattr(train_ds, "task", None) == "detection" and len(train_ds) and not has_masks(train_ds):
            raise UserError(f"{model if isinstance(model, str) else 'the model'} predicts instance masks and trains "
                            f"on them, but {shown(data) if isinstance(data, (str, Path)) else 'the data'} has none: "
                            "give a COCO JSON set with polygons or RLE (segmentation), or shapes-det")
        if bad and dist.is_main():
            warnings.warn(f"skipped {len(bad)} unreadable files, e.g. {shown(bad[0][0])}: {shown(bad[0][1])}",
                          stacklevel=2)
        _check_classes(class_names, data, bad, getattr(train_ds, "task", "classification"), train_ds)
        _check_input_size(model, image_size, train_ds, cfg.crop_size)
        in_chans = train_ds.images.shape[1] if train_ds.images is not None else train_ds[0][0].shape[0]
        seed_everything(cfg.seed)
        name = None
        if isinstance(model, str):
            from ..builder import create_model
            from ..registry import model_card
            from ..shipped import resolve_checkpoint

            name = model
            weights = None if init is None or resume is not None else resolve_checkpoint(init, model=name)
            if image_size is not None and model_card(name).task == "detection":  # the detector resizes to it too
                model_kwargs = {"image_size": image_size, **(model_kwargs or {})}
            with warnings.catch_warnings():
                if weights is not None:
                    warnings.filterwarnings("ignore", message=".*classifier shape differs")
                model = create_model(name, num_classes=len(class_names), in_chans=int(in_chans), weights=weights,
                                     **(model_kwargs or {}))
        teacher_model = _load_teacher(teacher, class_names) if teacher is not None else None
        if getattr(getattr(model, "card", None), "task", None) == "super_resolution":  # every photo holds a patch
            from ..superres.data import check_patches

            check_patches(model, train_ds, val_ds, image_size)
        run = {"model": name, "model_kwargs": model_kwargs or {},
               "data": str(data) if isinstance(data, (str, Path)) else None,
               "val_data": str(val_data) if isinstance(val_data, (str, Path)) else None,
               "init": str(init) if init is not None else saved.get("run", {}).get("init"),
               "teacher": _teacher_spec(teacher),
               "data_options": {"val_split": val_split, "image_size": image_size, "skip_bad": skip_bad,
                                "train_limit": train_limit, "val_limit": val_limit}}
        if bad:
            run["skipped_files"] = len(bad)
        from .fitted import fit_run, is_fitted

        if is_fitted(model):  # fitted by its own procedure (DPM's latent SVM), not by the gradient loop
            return fit_run(model, train_ds, val_ds, cfg=cfg, class_names=class_names, options=options, out=out,
                           input_size=image_size, log=log, extra_meta={"run": run}, overwrite=overwrite)
        trainer = Trainer(model, train_ds, val_ds, config=cfg, out=out, class_names=class_names, input_size=image_size,
                          log=log, tensorboard=tensorboard, device=device, teacher=teacher_model,
                          extra_meta={"run": run, **_class_map(train_ds)})
        if out is not None and bad and dist.is_main():
            _write_skipped(Path(out), bad)
        with plain_text_pictures():  # class names such as "$5" are labels, not TeX
            summary = trainer.fit(resume=resume is not None)
        summary["skipped_files"] = [{"file": shown(f), "reason": shown(r)} for f, r in bad]
        return summary
    finally:
        if we_started:
            dist.teardown()
