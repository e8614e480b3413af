"""Weights that ship inside the package, addressed by ``<model>.<tag>`` (e.g. ``resnet20.cifar10``),
and how a checkpoint argument (a file or such a tag) resolves to a file.

Each entry is a :class:`~archzoo.registry.WeightsRecord`: the file, the data it was trained on
(classes, input size, normalisation), the numbers it was measured at and its recipe.
"""

from __future__ import annotations

from pathlib import Path

from .registry import CIFAR_MEAN, CIFAR_STD, WeightsRecord

WEIGHTS_DIR = Path(__file__).parent / "pretrained"


SHIPPED: dict[tuple[str, str], WeightsRecord] = {}


def list_shipped() -> list[WeightsRecord]:
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


def register_shipped(entry: WeightsRecord) -> None:
    """Add weights to the shipped table (a file under ``archzoo/pretrained/``)."""
    if not (entry.model and entry.tag and entry.file):
        raise ValueError("shipped weights need a model, a tag and a file")
    key = (entry.model, entry.tag)
    if key in SHIPPED:
        raise ValueError(f"shipped weights {entry.model}.{entry.tag} are registered twice")
    SHIPPED[key] = entry


_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def resolve_checkpoint(arg: str | Path, model: str | None = None) -> Path:
    """Where a checkpoint argument points: an existing file, or the file of shipped weights named
    ``<model>.<tag>`` (e.g. ``resnet20.cifar10``; a bare ``<tag>`` when ``model`` is known)."""
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(f"checkpoint {arg} is a symbolic link that points nowhere or in a loop")
    if path.is_dir():
        raise IsADirectoryError(f"checkpoint {arg} is a folder; give a checkpoint file in it "
                                f"(e.g. {path / 'best.safetensors'})")
    text = str(arg)
    looks_like_path = "/" in text or "\\" in text or path.suffix in _WEIGHT_SUFFIXES
    if not looks_like_path:
        if "." in text:
            name, tag = text.split(".", 1)
            if model is not None and name != model:
                raise ValueError(f"{text} names weights of {name}, but the model is {model}")
            return shipped_weights_path(name, tag)
        if model is not None:
            return shipped_weights_path(model, text)
    raise FileNotFoundError(f"checkpoint {text} does not exist (nor is it <model>.<tag> of shipped weights)")


# --- the weights archzoo ships -------------------------------------------------------------------
# Each was trained by archzoo's own engine; the metric is re-measured by tests/test_shipped_weights.py
# with `archzoo eval` on the same held-out images.
register_shipped(WeightsRecord(
    model="resnet20", tag="cifar10", file="resnet20.cifar10.safetensors",
    dataset="CIFAR-10 training images as JPEG q75: 45,000 trained on, 5,000 held out (val_split 0.1, seed 0)",
    num_classes=10, input_size=(3, 32, 32), mean=CIFAR_MEAN, std=CIFAR_STD,
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    metrics={"held_out_accuracy": 0.88, "held_out_top5": 0.993},
    recipe="benchmarks/cifar10_distill.py: distilled (weight 0.9, T 4) from a wrn16_4 teacher trained on the same "
           "45,000 images (90.5% held out); 100 epochs, SGD Nesterov, batch 256, lr 0.1, 2 warm-up epochs, cosine, "
           "wd 5e-4, EMA 0.999, pad-4 crop + flip, bf16 (stopped after 92); then a second distillation cycle "
           "from those weights at lr 0.03 (79 of 100 epochs). One H200, 545 s of training in all, teacher included",
))
