"""YOLOv8 (the anchor-free YOLO of 2023): published sizes, any backbone, its parts (PAN, task-aligned
assigner, DFL), training on shapes, empty images and bad targets. There is no reference to compare
outputs with (ultralytics is not a dependency): the published parameter counts and GFLOPs are the check."""

from __future__ import annotations


import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.detection.assigners import TaskAlignedAssigner
from archzoo.detection.losses import distribution_expectation, distribution_focal_loss
from archzoo.detection.necks.pan import PAN
from archzoo.profile import count_gflops, count_params

from detection_helpers import random_images


class _Dense(nn.Module):
    """The detector's network on a batch tensor (what Ultralytics profiles: no resize, no decoding)."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        return self.detector.forward_batch(x)


@pytest.mark.parametrize("name, params_m, gflops", [("yolov8n", 3.2, 8.7), ("yolov8s", 11.2, 28.6)])
def test_published_parameters_and_gflops_at_640(name, params_m, gflops):
    """Ultralytics' table: 3.2M / 11.2M parameters, 8.7 / 28.6 GFLOPs at 640 with 80 classes, counting
    2 FLOPs per multiply-add (archzoo.profile counts multiply-adds). Measured on the meta device."""
    with torch.device("meta"):
        model = archzoo.create_model(name).eval()
    assert model.num_classes == 80
    assert round(count_params(model) / 1e6, 1) == params_m
    assert round(2 * count_gflops(_Dense(model), (3, 640, 640)), 1) == gflops


def _targets(k=3):
    return [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [30.0, 5.0, 90.0, 40.0]]), "labels": torch.tensor([0, k - 1])},
            {"boxes": torch.tensor([[0.0, 0.0, 20.0, 30.0]]), "labels": torch.tensor([1])}]


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2_035"])
def test_any_zoo_backbone_trains_and_detects(backbone):
    torch.manual_seed(0)
    model = archzoo.create_model("yolov8n", backbone=backbone, num_classes=3, image_size=96)
    assert model.strides == (8, 16, 32)
    images = random_images(2, (3, 80, 96))
    losses = model(images, _targets())
    assert set(losses) == {"box", "cls", "dfl"} and all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in out)
    for d in out:
        assert d["labels"].numel() == 0 or int(d["labels"].max()) < 3
        assert (d["boxes"][:, 2:] <= torch.tensor([96.0, 80.0]) + 1e-4).all()


def test_pan_levels_and_channels():
    pan = PAN([32, 64, 128], [16, 32, 64], depth=1)
    feats = [torch.rand(2, c, 32 // s, 32 // s) for c, s in zip([32, 64, 128], [1, 2, 4])]
    out = pan(feats)
    assert [tuple(o.shape) for o in out] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]


def test_distribution_focal_loss_and_expectation():
    reg_max = 16
    target = torch.tensor([[3.0, 0.0, 7.25, 14.5]])
    # the ideal distribution (mass split between the two bins around the target) has the least loss
    ideal = torch.full((1, 4, reg_max), -30.0)
    for j, y in enumerate(target[0].tolist()):
        i = int(y)
        ideal[0, j, i] = torch.log(torch.tensor(i + 1 - y).clamp(min=1e-12))
        ideal[0, j, i + 1] = torch.log(torch.tensor(y - i).clamp(min=1e-12))
    torch.testing.assert_close(distribution_expectation(ideal), target, atol=1e-4, rtol=0)
    ideal_loss = distribution_focal_loss(ideal, target)
    other = distribution_focal_loss(torch.zeros(1, 4, reg_max), target)
    assert (ideal_loss < other).all()
    # at an integer target the ideal loss is zero
    assert float(ideal_loss[0, 0]) == pytest.approx(0.0, abs=1e-5)


def test_task_aligned_assigner():
    g = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(16) * 4 + 2.0, torch.arange(16) * 4 + 2.0, indexing="ij")
    points = torch.stack((xs, ys), -1).reshape(-1, 2)  # a 16x16 grid at stride 4
    gt = torch.tensor([[4.0, 4.0, 40.0, 36.0], [20.0, 20.0, 60.0, 60.0]])
    labels = torch.tensor([1, 0])
    pred = gt[torch.randint(0, 2, (256,), generator=g)] + torch.randn(256, 4, generator=g) * 3
    scores = torch.rand(256, 3, generator=g)
    a = TaskAlignedAssigner(topk=10)(scores, pred, points, gt, labels)
    assert 10 <= int(a.foreground.sum()) <= 20  # at most topk per box, overlaps resolved
    fg = a.foreground.nonzero().squeeze(1)
    # every positive lies inside the box it learns, and has that box's class as its only target
    inside = (points[fg] > a.boxes[fg, :2]).all(1) & (points[fg] < a.boxes[fg, 2:]).all(1)
    assert inside.all()
    assert (a.scores[fg].argmax(1) == a.labels[fg]).all() and (a.scores[~a.foreground] == 0).all()
    assert (a.scores.sum(1)[fg] > 0).all() and float(a.scores.max()) <= 1.0
    # an image without objects: all background
    empty = TaskAlignedAssigner()(scores, pred, points, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert not empty.foreground.any() and (empty.scores == 0).all()


def test_empty_images_train_without_nan():
    torch.manual_seed(0)
    model = archzoo.create_model("yolov8n", num_classes=2, image_size=64)
    images = random_images(2, (3, 64, 64))
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
    losses = model(images, empty)
    total = sum(losses.values())
    assert torch.isfinite(total) and float(losses["box"]) == 0.0 and float(losses["dfl"]) == 0.0
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    # one empty image next to a normal one
    mixed = [empty[0], {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0]]), "labels": torch.tensor([1])}]
    assert all(torch.isfinite(v) for v in model(images, mixed).values())


@pytest.mark.parametrize("target, message", [
    ({"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([0])}, "no area"),
    ({"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([2])}, "labels must be int64 in 0..1"),
    ({"boxes": torch.tensor([[1.0, 1.0, 5.0]]), "labels": torch.tensor([0])}, r"\[k, 4\]"),
    ({"boxes": torch.tensor([[1.0, float("nan"), 5.0, 5.0]]), "labels": torch.tensor([0])}, "finite"),
])
def test_bad_targets_raise(target, message):
    model = archzoo.create_model("yolov8n", num_classes=2, image_size=64)
    with pytest.raises(ValueError, match=message):
        model(random_images(1, (3, 64, 64)), [target])


