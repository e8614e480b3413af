"""The commands on segmenters (issue 16): ``archzoo eval --json`` (numbers against a confusion
matrix counted here), ``archzoo predict`` (mask and overlay PNGs at the image's size, large images
through the sliding window), the end-of-run picture (image / truth / prediction), and ``archzoo
cam`` on a segmenter: Grad-CAM of a class's region against a hand computation, Eigen-CAM's
projection against pytorch-grad-cam's. The checkpoint is the zoo's U-Net, narrow (base width 4,
depth 2, no batch norm) at 32 px with random weights; the maps' placement is checked on a
hand-wired net."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from test_robustness_helpers import assert_clean_error, run_cli
from torchvision.transforms.v2 import functional as TF

import archzoo
from archzoo.data import load_dataset
from archzoo.engine.segmentation import SegmentationTask
from archzoo.explain import first_component, segmentation_cam
from archzoo.explain.dense import largest_classes

pytestmark = pytest.mark.filterwarnings("ignore")

MEAN, STD, SIZE = [0.5] * 3, [0.25] * 3, 32


@pytest.fixture(scope="module")
def shapes():
    return load_dataset("shapes-seg", val_split=0.0, subset="test").train  # what eval reads: 1,000 images, 32 px


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, shapes):
    """``(path, the model as the commands rebuild it)``: a narrow U-Net for the 9 shapes-seg classes."""
    torch.manual_seed(0)
    # without batch norm, a random U-Net's prediction varies over the image (with it, one class covers most)
    model = archzoo.create_model("unet", num_classes=len(shapes.class_names), in_chans=3, base_width=4, depth=2,
                                 norm_layer=None)
    path = tmp_path_factory.mktemp("seg") / "unet.safetensors"
    archzoo.save_model(model, path, class_names=shapes.class_names, input_size=[3, SIZE, SIZE], mean=MEAN, std=STD)
    return path, archzoo.load_model(path)[0]


def _normalised(image: torch.Tensor) -> torch.Tensor:
    m, s = torch.tensor(MEAN).view(-1, 1, 1), torch.tensor(STD).view(-1, 1, 1)
    return (image.float() / 255 - m) / s


def _write(path, h: int, w: int, seed: int = 0):
    """A random colour PNG ``h x w`` with a bright block; returns it as uint8 ``[3, h, w]``."""
    a = np.random.default_rng(seed).integers(0, 120, (h, w, 3), dtype=np.uint8)
    a[h // 4: h // 2, w // 3: 2 * w // 3] = 230
    Image.fromarray(a).save(path)
    return torch.from_numpy(a).permute(2, 0, 1)


# ---------------------------------------------------------------- eval


def test_eval_json_numbers_match_a_confusion_matrix_counted_here(ckpt, shapes, capsys):
    path, model = ckpt
    rc, out, err = run_cli(["eval", path, "--data", "shapes-seg", "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert {"miou", "pixel_accuracy", "dice", "pixel_error", "per_class_iou", "count", "loss"} <= set(r)
    k = len(shapes.class_names)
    with torch.no_grad():
        pred = torch.cat([model(_normalised(shapes.images[i:i + 250])).argmax(1) for i in range(0, 1000, 250)])
    truth = shapes.targets["mask"].long()
    valid = truth != 255
    cm = torch.bincount(truth[valid] * k + pred[valid], minlength=k * k).view(k, k).double()
    tp, t, p = cm.diag(), cm.sum(1), cm.sum(0)
    seen = (t + p - tp) > 0
    iou, dice = tp / (t + p - tp).clamp(min=1), 2 * tp / (t + p).clamp(min=1)
    accuracy = float(tp.sum() / cm.sum())
    assert r["count"] == 1000 and r["confusion"] == cm.long().tolist()
    assert r["miou"] == pytest.approx(float(iou[seen].mean()), abs=1e-9)
    assert r["dice"] == pytest.approx(float(dice[seen].mean()), abs=1e-9)
    assert r["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert r["pixel_error"] == pytest.approx(1 - accuracy, abs=1e-12)
    assert r["per_class_iou"] == pytest.approx({shapes.class_names[i]: float(iou[i]) for i in range(k) if seen[i]})
    (_, _, rows), (_, columns, per_class) = SegmentationTask(k, shapes.class_names).eval_tables(r)  # what eval prints
    assert [row[0] for row in rows] == ["mean IoU", "pixel accuracy", "mean Dice", "pixel error", "loss", "images"]
    assert columns == ["class", "IoU", "Dice"] and len(per_class) == int(seen.sum())


# ---------------------------------------------------------------- predict


def test_predict_writes_a_mask_and_an_overlay_at_the_image_size(ckpt, tmp_path, capsys):
    path, model = ckpt
    image = _write(tmp_path / "small.png", 24, 30)  # not larger than the 32-px input: resized to it
    rc, out, err = run_cli(["predict", path, tmp_path / "small.png", "--out", tmp_path / "out", "--json",
                            "--device", "cpu"], capsys)
    assert rc == 0, err
    (entry,) = json.loads(out)["predictions"]
    assert set(entry) == {"file", "top", "mask", "overlay"}
    png = Image.open(entry["mask"])
    assert png.mode == "P" and png.size == (30, 24)
    mask = torch.from_numpy(np.asarray(png)).long()
    x = _normalised(TF.resize(image, [SIZE, SIZE], antialias=True))[None]
    with torch.no_grad():
        want = F.interpolate(model(x), size=(24, 30), mode="bilinear", align_corners=False).argmax(1)[0]
    assert torch.equal(mask, want) and len(mask.unique()) > 1
    shares = torch.bincount(mask.flatten(), minlength=9).double() / mask.numel()
    names = ["background", *archzoo.data.shapes.CLASS_NAMES]
    want_shares = {names[i]: float(v) for i, v in enumerate(shares) if v}
    assert {t["class"]: t["share"] for t in entry["top"]} == pytest.approx(want_shares)
    # the overlay: the image where the mask is background, half image half class colour elsewhere
    overlay = torch.from_numpy(np.asarray(Image.open(entry["overlay"]))).permute(2, 0, 1).float()
    palette = torch.tensor(png.getpalette()[:27], dtype=torch.float32).view(9, 3)
    blended = torch.where(mask[None] > 0, 0.5 * image + 0.5 * palette[mask].permute(2, 0, 1), image.float())
    assert overlay.shape == (3, 24, 30) and (overlay - blended).abs().max() <= 0.5 + 1e-4
    # --crf: the dense CRF's marginals over that softmax and the image's colours decide instead
    from archzoo.segmentation.crf import dense_crf

    rc, out, err = run_cli(["predict", path, tmp_path / "small.png", "--crf", "--out", tmp_path / "crf", "--json",
                            "--device", "cpu"], capsys)
    assert rc == 0, err
    refined = torch.from_numpy(np.asarray(Image.open(json.loads(out)["predictions"][0]["mask"]))).long()
    with torch.no_grad():
        probs = F.interpolate(model(x), size=(24, 30), mode="bilinear", align_corners=False).softmax(1)[0]
    assert torch.equal(refined, dense_crf(probs, image.float()).argmax(0))


def test_a_large_image_runs_through_the_sliding_window(ckpt, tmp_path, capsys, monkeypatch):
    import archzoo.segmentation.tiling as tiling

    path, model = ckpt
    seen, calls = [], []
    original = tiling.sliding_window

    def spy(net, image, tile, *args, **kwargs):
        calls.append((tuple(image.shape), tile))
        hook = net.register_forward_pre_hook(lambda _m, a: seen.append(tuple(a[0].shape)))
        try:
            return original(net, image, tile, *args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(tiling, "sliding_window", spy)
    image = _write(tmp_path / "big.png", 70, 90, seed=1)
    for tile in (SIZE, 48):
        rc, out, err = run_cli(["predict", path, tmp_path / "big.png", "--out", tmp_path / "out", "--json",
                                "--device", "cpu", "--tile", tile], capsys)
        assert rc == 0, err
        assert calls[-1] == ((1, 3, 70, 90), tile)
        assert seen and all(s[0] <= 4 and s[2:] == (tile, tile) for s in seen)  # never more than 4 tiles of `tile`
        seen.clear()
        mask = torch.from_numpy(np.asarray(Image.open(json.loads(out)["predictions"][0]["mask"]))).long()
        want = original(model, _normalised(image)[None], tile, 0.25, 9, 4).argmax(1)[0]
        assert mask.shape == (70, 90) and torch.equal(mask, want)
    # without --tile the image is resized to the model's input, as training and `archzoo eval` see images
    n = len(calls)
    rc, out, err = run_cli(["predict", path, tmp_path / "big.png", "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert len(calls) == n
    assert Image.open(tmp_path / "out" / "big.overlay.png").size == (90, 70)


def test_bad_arguments_are_clear_errors(ckpt, tmp_path, capsys):
    from test_robustness_helpers import save_checkpoint

    path, _ = ckpt
    _write(tmp_path / "a.png", 20, 20)
    rc, _, err = run_cli(["predict", path, tmp_path / "a.png", "--tile", "8"], capsys)
    assert_clean_error(rc, err, "--tile 8", "32")
    rc, _, err = run_cli(["predict", path, tmp_path / "a.png", "--score-threshold", "0.5"], capsys)
    assert_clean_error(rc, err, "--score-threshold is for detectors", "segmentation")
    classifier = save_checkpoint(tmp_path / "c.safetensors")
    rc, _, err = run_cli(["predict", classifier, tmp_path / "a.png", "--tile", "64"], capsys)
    assert_clean_error(rc, err, "--tile is for segmenters", "classification")
    rc, _, err = run_cli(["cam", path, tmp_path / "a.png", "--class", "hexagon", "--out", tmp_path / "c"], capsys)
    assert_clean_error(rc, err, "--class 'hexagon'", "crescent")
    rc, _, err = run_cli(["cam", path, tmp_path / "a.png", "--class", "9", "--out", tmp_path / "c"], capsys)
    assert_clean_error(rc, err, "--class 9 is out of range")
    rc, _, err = run_cli(["cam", path, tmp_path / "a.png", "--method", "cam", "--out", tmp_path / "c"], capsys)
    assert_clean_error(rc, err, "original CAM", "gradcam")
    rc, _, err = run_cli(["cam", path, tmp_path / "a.png", "--method", "eigencam", "--class", "star",
                          "--out", tmp_path / "c"], capsys)
    assert_clean_error(rc, err, "--class", "class-agnostic")


# ---------------------------------------------------------------- the end of a run


def test_the_run_picture_shows_image_truth_and_prediction(ckpt, shapes, tmp_path, monkeypatch):
    import archzoo.engine.report as report

    _, model = ckpt
    figures = []
    make = report.new_figure
    monkeypatch.setattr(report, "new_figure", lambda *a: figures.append(make(*a)) or figures[-1])

    class Preprocess:  # what the trainer hands over: uint8 batch -> model input, and its size
        size = SIZE

        def __call__(self, images):
            return _normalised(images)

    files = SegmentationTask(9, shapes.class_names).report(tmp_path, model, {}, shapes.subset(range(3)), Preprocess())
    assert [f.name for f in files] == ["predictions.png"] and files[0].is_file()
    axes = [ax for ax in figures[-1].axes if ax.images]
    assert len(axes) == 9 and [ax.get_title() for ax in axes[:3]] == ["image", "truth", "prediction"]
    with torch.no_grad():
        pred = model(_normalised(shapes.images[:3])).argmax(1)
    palette = report._palette(9)
    for i in range(3):
        image, truth, shown = (np.asarray(ax.images[0].get_array()) for ax in axes[3 * i: 3 * i + 3])
        assert np.allclose(image, shapes.images[i].permute(1, 2, 0).numpy() / 255)
        assert (shapes.targets["mask"][i] > 0).any()  # each truth has objects to paint
        for mask, picture in ((shapes.targets["mask"][i].long(), truth), (pred[i], shown)):
            assert np.allclose(picture, report._overlay(shapes.images[i], mask, palette, 255))


# ---------------------------------------------------------------- cam


class Bright(nn.Module):
    """Class 1 where the 3x3 mean brightness is above the image's middle grey, class 0 elsewhere:
    ``backbone`` gives ``relu(+b)`` and ``relu(-b)``, the head their difference."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(2, 2, 1, bias=False)
        with torch.no_grad():
            self.backbone[0].weight.copy_(torch.stack([torch.full((3, 3, 3), 1 / 27), torch.full((3, 3, 3), -1 / 27)]))
            self.backbone[0].bias.zero_()
            self.head.weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]).view(2, 2, 1, 1))

    def forward(self, x):
        return self.head(self.backbone(x))


def _bright_square():
    x = torch.full((1, 3, 48, 64), -1.0)
    x[..., 10:26, 30:50] = 1.0
    inside = torch.zeros(48, 64, dtype=torch.bool)
    inside[10:26, 30:50] = True
    return x, inside


def test_segmenter_gradcam_is_the_hand_computation_over_the_class_region():
    model = Bright().eval()
    x, inside = _bright_square()
    found = segmentation_cam(model, x, "gradcam", class_names=["background", "bright"])
    assert found.classes == [1] and found.layer == "backbone" and not found.whole_image[0]
    assert found.shares[0] == pytest.approx(float((model(x).argmax(1) == 1).float().mean()))
    # Grad-CAM by hand: the score is class 1's logit summed over the pixels predicted as 1
    feats = model.backbone(x).detach().requires_grad_(True)
    logits = model.head(feats)
    region = logits.argmax(1, keepdim=True) == 1
    (grad,) = torch.autograd.grad((logits[:, 1:2] * region).sum(), feats)
    cam = (grad.mean((2, 3), keepdim=True) * feats).sum(1)[0].relu().detach()
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    torch.testing.assert_close(found.maps[0], cam, atol=1e-5, rtol=0)
    assert found.maps[0][inside].mean() > 0.8 and found.maps[0][~inside].max() < 0.01  # the object's rim: 1/3
    # another class: the background's region lights up instead
    back = segmentation_cam(model, x, "gradcam", target=0).maps[0]
    assert back[~inside].mean() > 0.8 and back[inside].mean() < 0.01  # (the square's corners: 1/9)
    # no hooks stay behind, and the model is left in its mode
    assert not any(m._forward_hooks for m in model.modules()) and not model.training


def test_the_default_class_is_the_largest_that_is_not_background():
    pred = torch.tensor([[[0, 0, 0, 2], [0, 1, 1, 2], [0, 1, 1, 2]], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    assert largest_classes(pred, 3, ["background", "a", "b"]) == [1, 0]
    assert largest_classes(pred, 3, ["road", "a", "b"]) == [0, 0]  # nothing named background: class 0 counts


def test_eigencam_projection_is_pytorch_grad_cams_oriented_to_the_response():
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    acts = torch.rand(3, 8, 5, 6) ** 3
    ours = first_component(acts)
    theirs = torch.from_numpy(get_2d_projection(acts.numpy()))
    for a, b, act in zip(ours, theirs, acts):
        sign = 1.0 if (a * b).sum() >= 0 else -1.0
        torch.testing.assert_close(a, sign * b, atol=1e-4, rtol=1e-4)
        assert (a * act.norm(dim=0)).sum() >= 0  # oriented towards where the layer responds


def test_cam_command_on_a_segmenter(ckpt, tmp_path, capsys):
    path, _ = ckpt
    _write(tmp_path / "a.png", 40, 56)
    _write(tmp_path / "b.png", 30, 30, seed=2)
    rc, out, err = run_cli(["cam", path, tmp_path / "a.png", tmp_path / "b.png", "--out", tmp_path / "maps", "--json",
                            "--device", "cpu"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["method"] == "gradcam" and r["layer"] == "encoder.2"  # U-Net's last contracting stage
    for entry, name in zip(r["images"], ("a", "b")):
        assert set(entry) == {"file", "class", "index", "share", "region", "overlay"}
        assert entry["class"] != "background" or entry["share"] == 1.0
        assert entry["overlay"].endswith(f"{name}.gradcam.png") and Image.open(entry["overlay"]).size[0] > 100
    rc, out, err = run_cli(["cam", path, tmp_path / "a.png", "--class", "crescent", "--method", "layercam",
                            "--out", tmp_path / "maps", "--json"], capsys)
    assert rc == 0, err
    (entry,) = json.loads(out)["images"]
    assert entry["class"] == "crescent" and entry["index"] == 8
    assert entry["region"] == ("whole image" if entry["share"] == 0 else "predicted")
