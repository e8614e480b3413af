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

register_shipped(WeightsRecord(
    model="yolov8n", tag="nuts", file="yolov8n.nuts.safetensors",
    dataset="the nuts photos (800x600, Pascal VOC boxes): 13 trained on, 3 held out (3.jpg, 7.jpg, 17.jpg: 30 objects)",
    num_classes=3, input_size=(3, 320, 320), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
    class_names=("date", "fig", "hazelnut"),
    metrics={"held_out_map50": 0.962, "held_out_map": 0.631, "held_out_map75": 0.692},
    recipe="from scratch (no pretrained backbone exists here): archzoo train yolov8n --image-size 320 --augment "
           "scale-jitter (0.3-2x, crop, flip) --opt adamw --lr 0.002 --weight-decay 0.05 --warmup-epochs 5 "
           "--epochs 400 (cosine) -b 8 --ema 0.99; stopped after 277 epochs (~550 steps), the weights of epoch 260, "
           "the best of the evaluations every 10 epochs on the 3 held-out photos (so the held-out figure is the "
           "selected one, slightly optimistic). 2-core CPU shared with other jobs: 80 min (about 3 s/epoch alone). "
           "Stored in float16 (6 MB); held-out numbers re-measured from this file",
))

register_shipped(WeightsRecord(
    model="unet", tag="membrane", file="unet.membrane.safetensors",
    dataset="ISBI 2012 EM membrane slices (512x512 grey, 0 = membrane, 255 = cell): slices 0-19 trained on, 20-24 held out",
    num_classes=2, input_size=(1, 256, 256), mean=(0.5,), std=(0.5,), class_names=("value_0", "value_255"),
    metrics={"held_out_pixel_error": 0.0829, "held_out_miou": 0.7728, "held_out_dice": 0.8658,
             "held_out_pixel_error_512": 0.0850},
    recipe="from scratch: archzoo train unet --model-kwargs base_width=16 (U-Net with batch norm, 1.94M parameters; "
           "registered as unet_small too) --image-size 256 (slices resized 512 -> 256) --augment unet (flips, "
           "90-degree turns, rotation/scale/shift, elastic, grey-value jitter) --loss ce+dice --opt adamw --lr 0.003 "
           "--weight-decay 0.01 --warmup-epochs 2 --epochs 60 -b 4 (300 steps). held_out_* as archzoo eval scores "
           "them (at 256x256); held_out_pixel_error_512: the logits upsampled to the slices' 512x512. 2-core CPU "
           "shared with other jobs: 55 min (about 25 s/epoch alone). Stored in float16 (3.9 MB). The goal was pixel "
           "error <= 0.06; training on 256-pixel crops at the native 512 scale (--crop-size 256, 750 steps, base "
           "width 16 or 24) scored 0.087 / 0.086 at 512, no better",
))
