"""Training on crops at the evaluation scale (``--crop-size``) and architecture arguments from the
command line (``--model-kwargs``): the recipe that trains the shipped membrane U-Net on 256-pixel
pieces of its 512-pixel slices and evaluates it on whole slices."""

from __future__ import annotations

import pytest
import torch
from test_robustness_helpers import assert_clean_error, run_cli

import archzoo
from archzoo.checkpoint import read_checkpoint
from archzoo.cli.train import model_kwarg
from archzoo.data import IGNORE_INDEX
from archzoo.data.transforms import DenseTransform
from archzoo.engine.config import TrainConfig
from archzoo.engine.task import make_task
from archzoo.validate import UserError


def _sample(h: int, w: int):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    mask = torch.randint(0, 3, (h, w), dtype=torch.uint8)
    return image, {"mask": mask}


def test_training_crops_are_cut_at_the_image_size_scale_and_evaluation_sees_the_whole_image():
    image, target = _sample(64, 64)
    train = DenseTransform(True, 64, [0.5] * 3, [0.5] * 3, flip=False, pad=0, crop=24)
    x, t = train(image, target)
    assert x.shape == (3, 24, 24) and t["mask"].shape == (24, 24)
    # the crop is a window of the (unresized) picture: find it and compare pixel for pixel
    full = (image.float() / 255 - 0.5) / 0.5
    hits = [(i, j) for i in range(41) for j in range(41) if torch.allclose(full[:, i:i + 24, j:j + 24], x, atol=1e-6)]
    assert len(hits) == 1
    i, j = hits[0]
    assert torch.equal(t["mask"], target["mask"][i:i + 24, j:j + 24])
    x_eval, t_eval = DenseTransform(False, 64, [0.5] * 3, [0.5] * 3, crop=24)(image, target)
    assert x_eval.shape == (3, 64, 64) and torch.equal(t_eval["mask"], target["mask"])


def test_a_crop_larger_than_the_picture_is_padded_with_ignored_pixels():
    image, target = _sample(40, 40)
    x, t = DenseTransform(True, 40, [0.5] * 3, [0.5] * 3, flip=False, pad=0, crop=48)(image, target)
    assert x.shape == (3, 48, 48)
    assert int((t["mask"] == IGNORE_INDEX).sum()) == 48 * 48 - 40 * 40
    assert int((t["mask"] != IGNORE_INDEX).sum()) == 40 * 40


def test_crop_size_is_checked_and_refused_for_classification():
    with pytest.raises(UserError, match="crop_size"):
        TrainConfig(crop_size=0)
    with pytest.raises(UserError, match="crop_size"):
        make_task("classification", ["a", "b"], cfg=TrainConfig(crop_size=32))
    assert make_task("segmentation", ["a", "b"], cfg=TrainConfig(crop_size=32)).num_classes == 2


def test_model_kwargs_values_are_read_as_json_else_as_text():
    assert model_kwarg("base_width=16") == ("base_width", 16)
    assert model_kwarg("output_stride=8") == ("output_stride", 8)
    assert model_kwarg("norm_layer=groupnorm") == ("norm_layer", "groupnorm")
    assert model_kwarg("scales=[1, 2]") == ("scales", [1, 2])
    for bad in ("base_width", "=3", "2x=1"):
        with pytest.raises(Exception, match="KEY=VALUE"):
            model_kwarg(bad)


@pytest.mark.filterwarnings("ignore")
def test_train_with_model_kwargs_and_crops_stores_both_and_eval_rebuilds_the_net(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "unet", "--model-kwargs", "base_width=4", "depth=2", "--data", "shapes-seg",
                          "--image-size", "64", "--crop-size", "32", "--epochs", "1", "-b", "8", "--train-limit", "16",
                          "--val-limit", "8", "--out", out, "--quiet"], capsys)
    assert rc == 0, err
    tensors, meta = read_checkpoint(out / "best.safetensors")
    assert meta["model"] == "unet" and meta["kwargs"] == {"base_width": 4, "depth": 2}
    assert meta["input_size"][-2:] == [64, 64] and meta["recipe"]["crop_size"] == 32
    expected = archzoo.create_model("unet", num_classes=meta["num_classes"], in_chans=3, base_width=4, depth=2)
    assert {k: v.shape for k, v in tensors.items()} == {k: v.shape for k, v in expected.state_dict().items()}
    model, _ = archzoo.load_model(out / "best.safetensors")
    assert model.build_args["kwargs"] == {"base_width": 4, "depth": 2}
    rc, _, err = run_cli(["train", "unet", "--model-kwargs", "base_width", "--data", "shapes-seg", "--out",
                          tmp_path / "bad"], capsys)
    assert rc == 2 and "KEY=VALUE" in err
    rc, _, err = run_cli(["train", "unet", "--data", "shapes-seg", "--crop-size", "16", "--out", tmp_path / "small"],
                         capsys)
    assert_clean_error(rc, err, "crop_size", "at least 32")
    rc, _, err = run_cli(["train", "resnet20", "--data", "digits", "--crop-size", "16", "--epochs", "1",
                          "--out", tmp_path / "cls"], capsys)
    assert_clean_error(rc, err, "crop_size")
