"""The weights that ship with archzoo: they load by tag, list their metrics, and score what they
claim on the real held-out images."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch

import archzoo
from archzoo import shipped
from archzoo.cli.main import main

from helpers import CIFAR_TAR, shared_data

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_every_shipped_file_is_small_and_present():
    for w in shipped.list_shipped():
        path = shipped.shipped_weights_path(w.model, w.tag)
        assert path.is_file(), path
        assert path.stat().st_size < 8 * 2**20, f"{path} is {path.stat().st_size} bytes"


def test_resnet20_cifar10_loads_by_tag_in_python_and_as_checkpoint():
    by_tag = archzoo.create_model("resnet20", weights="cifar10").eval()
    model, meta = archzoo.load_model("resnet20.cifar10", need_head=True)
    assert meta["class_names"] == CIFAR_CLASSES and meta["model"] == "resnet20"
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(by_tag(x), model(x))
    with pytest.raises(ValueError, match="shipped tags: cifar10"):
        archzoo.create_model("resnet20", weights="imagenet")


# What archzoo measured for these weights itself (README: 88.0% held out, top-5 99.3%): a regression
# value; the independent check is the evaluation on the real images below.
MEASURED = {"held_out_accuracy": 0.880, "held_out_top5": 0.993}


def _listed(capsys) -> dict:
    assert main(["models", "--weights", "--json"]) == 0
    rows = {r["weights"]: r for r in json.loads(capsys.readouterr().out)}
    return rows["resnet20.cifar10"]["metrics"]


def test_models_weights_lists_the_measured_accuracy(capsys):
    listed = _listed(capsys)
    assert listed["held_out_accuracy"] == pytest.approx(MEASURED["held_out_accuracy"], abs=5e-4)
    assert listed["held_out_top5"] == pytest.approx(MEASURED["held_out_top5"], abs=5e-4)


@pytest.fixture(scope="module")
def cifar_train(tmp_path_factory) -> Path:
    tar = shared_data(CIFAR_TAR)
    out = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(tar, "r:gz") as tf:
        tf.extractall(out, filter="data")
    return out / "train"


def test_resnet20_cifar10_scores_its_listed_accuracy_on_the_held_out_images(cifar_train, capsys, tmp_path, monkeypatch):
    """`archzoo eval` on the 5,000 held-out images (the split the weights never trained on)
    reproduces the accuracy `archzoo models --weights` lists: measured on CPU in float32 here."""
    listed = _listed(capsys)
    monkeypatch.setenv("ARCHZOO_CACHE", str(tmp_path / "cache"))
    assert main(["eval", "resnet20.cifar10", "--data", str(cifar_train), "--held-out", "0.1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 5000
    assert result["accuracy"] == pytest.approx(listed["held_out_accuracy"], abs=0.002)
    assert result["top5"] == pytest.approx(listed["held_out_top5"], abs=0.002)


# --- detectors and segmenters: the held-out photos and slices named in their records ------------

NUTS_HELD_OUT = ("3", "7", "17")  # the nuts photos yolov8n.nuts never trained on
MEMBRANE_HELD_OUT = ("20", "21", "22", "23", "24")  # the membrane slices unet.membrane never trained on


def _linked(tmp_path: Path, source: Path, names: dict[str, tuple[str, ...]]) -> Path:
    """A folder of symbolic links to some files of ``source``: ``{subfolder: file names}``."""
    for sub, files in names.items():
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        for f in files:
            (tmp_path / sub / f).symlink_to((source / sub / f).resolve())
    return tmp_path


def _eval_json(capsys, *argv: str) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_yolov8n_nuts_scores_its_listed_map_on_the_held_out_photos(tmp_path, capsys):
    nuts = shared_data("nuts/train")
    files = tuple(f"{n}{ext}" for n in NUTS_HELD_OUT for ext in (".jpg", ".xml"))
    held_out = _linked(tmp_path / "nuts", nuts.parent, {"train": files}) / "train"
    record = shipped.SHIPPED[("yolov8n", "nuts")]
    result = _eval_json(capsys, "yolov8n.nuts", "--data", str(held_out))
    assert result["count"] == 3 and list(result["per_class"]) == list(record.class_names)
    assert result["map50"] == pytest.approx(record.metrics["held_out_map50"], abs=0.005)
    assert result["map"] == pytest.approx(record.metrics["held_out_map"], abs=0.005)


def test_unet_membrane_scores_its_listed_pixel_error_on_the_held_out_slices(tmp_path, capsys):
    membrane = shared_data("membrane")
    files = tuple(f"{n}.png" for n in MEMBRANE_HELD_OUT)
    held_out = _linked(tmp_path / "membrane", membrane, {"image": files, "label": files})
    record = shipped.SHIPPED[("unet", "membrane")]
    result = _eval_json(capsys, "unet.membrane", "--data", str(held_out))
    assert result["count"] == 5
    assert result["pixel_error"] == pytest.approx(record.metrics["held_out_pixel_error"], abs=0.002)
    assert result["miou"] == pytest.approx(record.metrics["held_out_miou"], abs=0.002)


def test_unet_membrane_builds_through_create_model_at_the_width_it_was_trained_with():
    model = archzoo.create_model("unet", weights="membrane", num_classes=2, in_chans=1).eval()
    assert model.build_args["kwargs"] == {"base_width": 16}
    loaded, meta = archzoo.load_model("unet.membrane")
    assert meta["model"] == "unet" and meta["kwargs"] == {"base_width": 16}
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x), rtol=0, atol=0)
