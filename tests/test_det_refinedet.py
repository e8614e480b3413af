"""RefineDet (Zhang et al. 2017, arXiv:1711.06897): the anchors, RefineDet320/512 on the zoo's VGG-16
(maps, fc6/fc7, L2 norms, parameter count part by part), the two-step loss (a class-agnostic ARM, an
ODM matched and regressed on the refined anchors without gradient into the ARM), negative anchor
filtering in training and decoding, other backbones, errors, and ``archzoo train/eval/predict``.
Training on ``shapes`` and the save/load round trip are in test_detectors.py."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import box_iou

import archzoo
from archzoo.detection.matchers import IoUMatcher
from archzoo.detection.refinedet import RefineDetAnchors
from archzoo.detection.ssd import L2Norm
from archzoo.profile import count_params

SMALL = dict(backbone="mobilenet_v2_035", image_size=64)  # maps 8, 4, 2, 1


def _images_and_targets():
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 64, 64, generator=g), torch.rand(3, 48, 80, generator=g)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 44.0], [30.0, 30.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[10.0, 5.0, 50.0, 40.0]]), "labels": torch.tensor([1])}]
    return images, targets


def _small(**kwargs):
    torch.manual_seed(0)
    return archzoo.create_model("refinedet320_vgg16", num_classes=3, **{**SMALL, **kwargs})


def test_anchors_are_three_per_position_of_four_times_the_stride():
    boxes = RefineDetAnchors([[2]] * 4, scales=[0.1, 0.2, 0.4, 0.8, 1.0])
    assert boxes.num_anchors_per_location() == [3] * 4
    anchors = boxes((320, 320), [(40, 40), (20, 20), (10, 10), (5, 5)])
    assert anchors.shape == (3 * (1600 + 400 + 100 + 25), 4)
    first = anchors[:3]  # map 0, position (0, 0): centre (4, 4); a 32-px square, then ratios 2 and 1/2
    s = 32 * 2**0.5
    expected = torch.tensor([[-12.0, -12.0, 20.0, 20.0], [4 - s / 2, 4 - s / 4, 4 + s / 2, 4 + s / 4],
                             [4 - s / 4, 4 - s / 2, 4 + s / 4, 4 + s / 2]])
    torch.testing.assert_close(first, expected)
    last = anchors[-3]  # map 3 (stride 64), position (4, 4): centre 288, 256 px
    torch.testing.assert_close(last, torch.tensor([160.0, 160.0, 416.0, 416.0]))


@pytest.mark.parametrize("name, side", [("refinedet320_vgg16", 320), ("refinedet512_vgg16", 512)])
def test_refinedet_on_vgg16_maps_and_parts(name, side):
    with torch.device("meta"):
        model = archzoo.create_model(name)
        vgg = archzoo.create_model("vgg16")
        maps = model.neck(model.backbone(torch.empty(1, 3, side, side)))
    assert [m.shape[-1] for m in maps] == [side // s for s in (8, 16, 32, 64)]  # conv4_3, conv5_3, fc7, conv6_2
    assert [m.shape[1] for m in maps] == [512, 512, 1024, 512]
    body = model.backbone.model
    assert body.pool.kernel_size == 2 and not body.stages[3].pool.ceil_mode  # VGG's own pool5; no SSD changes
    assert {k: v.shape for k, v in body.state_dict().items()} == {k: v.shape for k, v in vgg.state_dict().items()
                                                                  if not k.startswith("head.")}
    fc6 = model.neck.fc[0].conv
    assert fc6.dilation == (3, 3) and fc6.padding == (3, 3) and fc6.out_channels == 1024
    assert [type(n) for n in model.norms] == [L2Norm, L2Norm, nn.Identity, nn.Identity]
    assert [n.weight.shape for n in model.norms[:2]] == [(512,), (512,)]  # initial scales 10 and 8: see below
    assert [m.out_channels for m in model.arm.classification] == [3 * 2] * 4
    assert [m.out_channels for m in model.head.classification] == [3 * 21] * 4  # 20 VOC classes + background
    assert [t.upsample is None for t in model.tcb] == [False, False, False, True]  # the coarsest has no top-down input


def test_refinedet_parameters_part_by_part():
    """No count is printed in the paper; ours, part by part (VOC: 21 logits): 34,440,884 for RefineDet320
    and RefineDet512 alike (the anchors do not depend on the input size)."""
    def conv(i, o, k):
        return i * o * k * k + o

    vgg = sum(conv(i, o, 3) for i, o in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                                         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])
    extra = conv(512, 1024, 3) + conv(1024, 1024, 1) + conv(1024, 256, 1) + conv(256, 512, 3) + 2 * 512  # + L2 norms
    sources = [512, 512, 1024, 512]
    arm = sum(conv(c, 3 * 2, 3) + conv(c, 3 * 4, 3) for c in sources)
    tcb = sum(conv(c, 256, 3) + 2 * conv(256, 256, 3) for c in sources) + 3 * conv(256, 256, 2)  # 3 deconvs
    odm = 4 * (conv(256, 3 * 21, 3) + conv(256, 3 * 4, 3))
    assert vgg + extra + arm + tcb + odm == 34_440_884
    with torch.device("meta"):
        assert count_params(archzoo.create_model("refinedet512_vgg16")) == 34_440_884
    model = archzoo.create_model("refinedet320_vgg16")  # for real: the L2 norms' initial scales
    assert count_params(model) == 34_440_884
    assert model.norms[0].weight.eq(10.0).all() and model.norms[1].weight.eq(8.0).all()


def test_the_odm_is_matched_and_regressed_on_the_refined_anchors():
    """The ODM's box loss computed by hand from the ARM's refined anchors; no ODM gradient reaches
    the ARM (the refined anchors are constants to it), and the ARM is class-agnostic."""
    model = _small()
    with torch.no_grad():  # every ARM box output is the code (1, -1, 0.5, 0.2): anchors visibly moved
        for conv in model.arm.regression:
            conv.weight.zero_()
            conv.bias.copy_(torch.tensor([1.0, -1.0, 0.5, 0.2]).repeat(conv.out_channels // 4))
    images, targets = _images_and_targets()
    losses = model(images, targets)
    batch, resized = model.transform(images, targets)
    outputs = model.forward_batch(batch.tensors)
    _, arm_codes, _, odm_codes, anchors = outputs
    refined, keep = model.refine(outputs[0], arm_codes, anchors)
    moved = model.box_coder.decode(torch.tensor([[1.0, -1.0, 0.5, 0.2]]).expand(len(anchors), 4), anchors)
    torch.testing.assert_close(refined[0], moved)
    total, n = 0.0, 0
    for t, code, boxes, kept in zip(resized, odm_codes, refined, keep):
        matches = IoUMatcher(0.5, force_best=True)(box_iou(t["boxes"], boxes))
        pos = torch.where((matches >= 0) & kept)[0]
        total = total + F.smooth_l1_loss(code[pos], model.box_coder.encode(t["boxes"][matches[pos]], boxes[pos]),
                                         reduction="sum")
        n += len(pos)
    assert n > 0
    torch.testing.assert_close(losses["bbox_regression"], total / n)
    model.zero_grad()
    (losses["bbox_regression"] + losses["classification"]).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.arm.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.head.parameters())
    relabelled = [{**t, "labels": (t["labels"] + 1) % 3} for t in targets]
    again = model(images, relabelled)
    for k in ("arm_bbox_regression", "arm_classification"):  # object vs background only
        torch.testing.assert_close(again[k], losses[k])
    assert not torch.equal(again["classification"], losses["classification"])


def test_negative_anchor_filtering_in_training_and_decoding():
    """Anchors whose ARM objectness is under 0.01 are neither positives nor negatives of the ODM and
    are never detected; ``objectness_thresh=0`` turns the filter off."""
    images, targets = _images_and_targets()
    for thresh, filtered in ((0.01, True), (0.0, False)):
        model = _small(objectness_thresh=thresh, score_thresh=0.0)
        with torch.no_grad():  # the ARM is sure every anchor is background: objectness about e^-12
            for conv in model.arm.classification:
                conv.weight.zero_()
                conv.bias.copy_(torch.tensor([6.0, -6.0]).repeat(3))
        losses = model(images, targets)
        assert all(torch.isfinite(v) for v in losses.values()) and float(losses["arm_classification"]) > 0
        odm = float(losses["classification"] + losses["bbox_regression"])
        model.eval()
        with torch.no_grad():
            found = sum(len(d["boxes"]) for d in model(images))
        assert (odm == 0.0 and found == 0) if filtered else (odm > 0 and found > 0), (thresh, odm, found)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2_035"])
def test_refinedet_on_other_backbones_trains_and_detects(backbone):
    model = _small(backbone=backbone)
    assert [t.lateral[0].conv.in_channels for t in model.tcb][-1] == 512  # conv6_2 on the stride-32 map
    images, targets = _images_and_targets()
    losses = model(images, targets)
    assert set(losses) == {"arm_bbox_regression", "arm_classification", "bbox_regression", "classification"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[1]["boxes"][:, 2].max() <= 80 and out[1]["boxes"][:, 3].max() <= 48  # original pixels


def test_refinedet_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        archzoo.create_model("refinedet320_vgg16", num_classes=0, **SMALL)
    with pytest.raises(ValueError, match="objectness_thresh"):
        archzoo.create_model("refinedet320_vgg16", objectness_thresh=1.0, **SMALL)
    with pytest.raises(ValueError, match="image_size"):
        archzoo.create_model("refinedet320_vgg16", backbone="mobilenet_v2_035", image_size=(64, 0))
    model = _small()
    images, _ = _images_and_targets()
    with pytest.raises(ValueError, match=r"labels must be int64 in 0\.\.2"):
        model(images[:1], [{"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([3])}])


def test_train_eval_predict_commands(tmp_path, capsys):
    """``archzoo train`` (a small backbone through --model-kwargs, 64 px), ``eval --json`` and
    ``predict --json`` on a Pascal VOC folder of shapes."""
    from test_detection_data import write_shapes
    from test_robustness_helpers import run_cli

    data = write_shapes(tmp_path / "voc", "voc", n=12)
    run = tmp_path / "run"
    rc, _, err = run_cli(["train", "refinedet320_vgg16", "--data", data, "--model-kwargs", "backbone=mobilenet_v2_035",
                          "--image-size", "64", "--epochs", "1", "-b", "8", "--val-split", "0.25", "--out", run,
                          "--workers", "0", "--device", "cpu", "--quiet"], capsys)
    assert rc == 0, err
    ckpt = run / "best.safetensors"
    rc, out, err = run_cli(["eval", ckpt, "--data", data, "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["count"] == 12 and 0.0 <= r["map50"] <= 1.0
    images = sorted(data.glob("*.png"))[:2]
    rc, out, err = run_cli(["predict", ckpt, *images, "--score-threshold", "0", "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    preds = json.loads(out)["predictions"]
    assert len(preds) == 2 and all(0 <= v <= 48 for p in preds for d in p["detections"] for v in d["box"])
    assert preds[0]["detections"] and preds[0]["detections"][0]["label"] in ("circle", "ellipse", "triangle")
