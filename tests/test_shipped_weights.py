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
        assert path.stat().st_size < 5 * 2**20, f"{path} is {path.stat().st_size} bytes"


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
