"""YOLO v1 (Redmon et al. 2015): the S x S x (5B + C) output, the paper's loss and decoding checked
by hand on crafted predictions, any backbone, training on shapes, empty images and bad targets."""

from __future__ import annotations


import pytest
import torch

import archzoo
from archzoo.detection.transform import ImageBatch

from detection_helpers import random_images

SMALL = dict(conv_width=32, extra_convs=1, fc_width=64)  # a small head: the paper's widths are 1024 / 4096


def test_paper_output_is_7x7x30_for_voc_at_448():
    with torch.device("meta"):
        model = archzoo.create_model("yolov1_resnet18").eval()
        boxes, probs = model.forward_batch(torch.zeros(1, 3, 448, 448))
    assert model.num_classes == 20 and model.card.input_size == (3, 448, 448)
    assert boxes.shape == (1, 49, 2, 5) and probs.shape == (1, 49, 20)
    assert boxes[0].numel() + probs[0].numel() == 7 * 7 * 30
    assert model.head.fc.out_features == 4096 and len(model.head.convs) == 4  # the paper's head


def _crafted(grid=2, boxes=2, classes=3):
    """A 2x2 grid on a 100x100 image; one object in the top-left cell centred at (25, 25), 20 x 40 pixels."""
    model = archzoo.create_model("yolov1_resnet18", num_classes=classes, grid=grid, boxes=boxes, image_size=100, **SMALL)
    pred = torch.zeros(1, grid * grid, boxes, 5)
    probs = torch.zeros(1, grid * grid, classes)
    # cell 0, predictor 0: a poor box; predictor 1: a good one (so it is responsible)
    pred[0, 0, 0] = torch.tensor([0.9, 0.9, 0.1, 0.1, 0.3])
    pred[0, 0, 1] = torch.tensor([0.5, 0.5, 0.2 ** 0.5, 0.4 ** 0.5, 0.8])
    pred[0, 3, 0, 4] = 0.2  # a confident predictor in an empty cell
    probs[0, 0] = torch.tensor([0.1, 0.7, 0.2])
    target = {"boxes": torch.tensor([[15.0, 5.0, 35.0, 45.0]]), "labels": torch.tensor([1])}
    return model, (pred, probs), ImageBatch(torch.zeros(1, 3, 100, 100), [(100, 100)]), target


def test_loss_is_the_papers_sum_squared_error():
    model, outputs, batch, target = _crafted()
    losses = model.loss(outputs, batch, [target])
    # predictor 1 is exact (x, y offsets 0.5, sqrt w, sqrt h): no coordinate error, IoU 1
    assert float(losses["coord"]) == pytest.approx(0.0, abs=1e-6)
    assert float(losses["obj"]) == pytest.approx((0.8 - 1.0) ** 2, abs=1e-5)
    # every other predictor: lambda_noobj * confidence^2 (predictor 0 of the object's cell included)
    assert float(losses["noobj"]) == pytest.approx(0.5 * (0.3 ** 2 + 0.2 ** 2), abs=1e-6)
    assert float(losses["cls"]) == pytest.approx(0.1 ** 2 + 0.3 ** 2 + 0.2 ** 2, abs=1e-6)
    # move the responsible box: lambda_coord = 5 times the squared offsets
    pred, probs = outputs
    pred = pred.clone()
    pred[0, 0, 1, 0] = 0.6
    pred[0, 0, 1, 2] = 0.5
    losses = model.loss((pred, probs), batch, [target])
    expected = 5 * (0.1 ** 2 + (0.5 - 0.2 ** 0.5) ** 2)
    assert float(losses["coord"]) == pytest.approx(expected, abs=1e-5)


def test_decoding_class_specific_confidence_then_nms():
    model, outputs, batch, _ = _crafted()
    model.score_thresh = 0.3
    det = model.detect(outputs, batch)[0]
    # predictor 1 of cell 0: 0.8 * 0.7 for class 1; the 0.8 * 0.2 and 0.3 * 0.7 ones fall under 0.3
    assert det["labels"].tolist() == [1]
    assert float(det["scores"][0]) == pytest.approx(0.56, abs=1e-6)
    torch.testing.assert_close(det["boxes"][0], torch.tensor([15.0, 5.0, 35.0, 45.0]), atol=1e-4, rtol=0)


def _targets():
    return [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [30.0, 5.0, 90.0, 40.0]]), "labels": torch.tensor([0, 2])},
            {"boxes": torch.tensor([[0.0, 0.0, 20.0, 30.0]]), "labels": torch.tensor([1])}]


@pytest.mark.parametrize("backbone", ["mobilenet_v2_035", "cspdarknet_v8n"])
def test_any_zoo_backbone_trains_and_detects(backbone):
    torch.manual_seed(0)
    model = archzoo.create_model("yolov1_resnet18", backbone=backbone, num_classes=3, image_size=96, **SMALL)
    images = random_images(2, (3, 80, 100))
    losses = model(images, _targets())
    assert set(losses) == {"coord", "obj", "noobj", "cls"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in out)


def test_empty_images_train_without_nan():
    model = archzoo.create_model("yolov1_resnet18", num_classes=2, image_size=64, **SMALL)
    images = random_images(2, (3, 64, 64))
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in images]
    losses = model(images, empty)
    assert float(losses["coord"]) == 0.0 and float(losses["cls"]) == 0.0
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("target, message", [
    ({"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([0])}, "no area"),
    ({"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([2])}, "labels must be int64 in 0..1"),
    ({"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([0, 1])}, r"\[k, 4\]"),
    ({"boxes": torch.tensor([[1.0, float("inf"), 5.0, 5.0]]), "labels": torch.tensor([0])}, "finite"),
])
def test_bad_targets_raise(target, message):
    model = archzoo.create_model("yolov1_resnet18", num_classes=2, image_size=64, **SMALL)
    with pytest.raises(ValueError, match=message):
        model(random_images(1, (3, 64, 64)), [target])


