"""Test-time augmentation of segmenters (archzoo.segmentation.tta): the averaged probabilities
against a hand computation, exactness for a net that commutes with flips and turns, and errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archzoo.segmentation.tta import TestTimeAugment


class RampNet(nn.Module):
    """Logits that depend on the position (a ramp across x), so every view sees something else."""

    num_classes = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)

    def forward(self, x):
        ramp = torch.linspace(0, 2, x.shape[-1]).view(1, 1, 1, -1)
        return self.conv(x) + ramp * torch.tensor([1.0, -1.0, 0.5]).view(1, 3, 1, 1)


def test_flip_averages_the_softmax_of_the_image_and_of_its_mirror_mapped_back():
    torch.manual_seed(0)
    net, x = RampNet().eval(), torch.randn(2, 1, 8, 12)
    with torch.no_grad():
        want = (net(x).softmax(1) + net(x.flip(-1)).softmax(1).flip(-1)) / 2
        got = TestTimeAugment(net, "flip").eval()(x)
    torch.testing.assert_close(got.softmax(1), want)
    torch.testing.assert_close(got.exp().sum(1), torch.ones(2, 8, 12))


def test_d4_averages_eight_views_on_a_non_square_image():
    torch.manual_seed(1)
    net, x = RampNet().eval(), torch.randn(1, 1, 6, 10)
    views = []
    with torch.no_grad():
        for k in range(4):
            for mirror in (False, True):
                v = x.flip(-1) if mirror else x
                p = torch.rot90(net(torch.rot90(v, k, (-2, -1))).softmax(1), -k, (-2, -1))
                views.append(p.flip(-1) if mirror else p)
        got = TestTimeAugment(net, "d4").eval()(x)
    assert got.shape == (1, 3, 6, 10)
    torch.testing.assert_close(got.softmax(1), torch.stack(views).mean(0))
    plain = net(x).softmax(1)
    assert not torch.allclose(got.softmax(1), plain, atol=1e-3)  # the ramp makes the views differ


def test_a_net_that_commutes_with_flips_and_turns_is_unchanged():
    torch.manual_seed(2)
    net = nn.Conv2d(1, 3, 1).eval()
    net.num_classes = 3
    x = torch.randn(2, 1, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(TestTimeAugment(net, "d4").eval()(x).softmax(1), net(x).softmax(1))


def test_training_mode_and_unknown_views_are_refused():
    with pytest.raises(ValueError, match="views must be one of"):
        TestTimeAugment(RampNet(), "rot45")
    with pytest.raises(RuntimeError, match="for evaluation"):
        TestTimeAugment(RampNet(), "flip").train()(torch.randn(1, 1, 4, 4))


def test_eval_command_scores_the_averaged_views(tmp_path, capsys):
    """``archzoo eval --tta flip`` scores the argmax of TestTimeAugment(model, "flip"), counted here."""
    import json

    from test_robustness_helpers import run_cli

    import archzoo
    from archzoo.data import load_dataset

    data = load_dataset("shapes-seg", val_split=0.0, subset="test").train
    torch.manual_seed(0)
    model = archzoo.create_model("unet", num_classes=len(data.class_names), in_chans=3, base_width=4, depth=2,
                                 norm_layer=None).eval()
    path = tmp_path / "unet.safetensors"
    mean, std = [0.5] * 3, [0.25] * 3
    archzoo.save_model(model, path, class_names=data.class_names, input_size=[3, 32, 32], mean=mean, std=std)
    runs = {}
    for views in ("none", "flip"):
        rc, out, err = run_cli(["eval", path, "--data", "shapes-seg", "--json", "--device", "cpu", "--tta", views],
                               capsys)
        assert rc == 0, err
        runs[views] = json.loads(out)
    x = (data.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    truth = data.targets["mask"].long()
    with torch.no_grad():
        pred = torch.cat([TestTimeAugment(model, "flip").eval()(x[i:i + 250]).argmax(1) for i in range(0, len(x), 250)])
    valid = truth != 255
    assert runs["flip"]["tta"] == "flip" and "tta" not in runs["none"]
    assert runs["flip"]["pixel_accuracy"] == pytest.approx(float((pred == truth)[valid].double().mean()), abs=1e-7)
    assert runs["flip"]["pixel_accuracy"] != runs["none"]["pixel_accuracy"]  # the views change the answer


def test_eval_refuses_tta_for_a_classifier(capsys):
    from test_robustness_helpers import assert_clean_error, run_cli

    rc, out, err = run_cli(["eval", "resnet20.cifar10", "--data", "digits", "--tta", "flip"], capsys)
    assert_clean_error(rc, err, "--tta is for segmenters")


def test_predict_with_flip_views_is_mirror_equivariant(tmp_path, capsys):
    """``archzoo predict --tta flip``: the mask of a mirrored image is the mirrored mask (the two
    views are averaged, so the answer cannot depend on the image's handedness); without TTA a
    random U-Net is not."""
    import numpy as np
    from PIL import Image
    from test_robustness_helpers import run_cli

    import archzoo

    torch.manual_seed(0)
    model = archzoo.create_model("unet", num_classes=3, in_chans=3, base_width=4, depth=2, norm_layer=None).eval()
    path = tmp_path / "unet.safetensors"
    archzoo.save_model(model, path, class_names=["a", "b", "c"], input_size=[3, 32, 32], mean=[0.5] * 3, std=[0.25] * 3)
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "a.png")
    Image.fromarray(picture[:, ::-1].copy()).save(tmp_path / "b.png")
    masks = {}
    for views in ("none", "flip"):
        out = tmp_path / views
        rc, _, err = run_cli(["predict", path, tmp_path / "a.png", tmp_path / "b.png", "--out", out, "--tta", views,
                              "--device", "cpu"], capsys)
        assert rc == 0, err
        masks[views] = [np.asarray(Image.open(out / f"{n}.mask.png")) for n in "ab"]
    a, b = masks["flip"]
    assert (a[:, ::-1] == b).all()
    a, b = masks["none"]
    assert (a[:, ::-1] != b).any()


def test_predict_refuses_tta_for_a_classifier(tmp_path, capsys):
    from PIL import Image
    from test_robustness_helpers import assert_clean_error, run_cli

    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    rc, out, err = run_cli(["predict", "resnet20.cifar10", tmp_path / "a.png", "--tta", "d4"], capsys)
    assert_clean_error(rc, err, "--tta is for segmenters")
