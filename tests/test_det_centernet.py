"""CenterNet (objects as points): targets and decoding agree, the paper's parts, parameter count,
other backbones, training on shapes, empty images, bad targets. The paper is the only reference."""

from __future__ import annotations


import pytest
import torch

import archzoo
from archzoo.detection.centernet import centre_targets, gaussian_radius
from archzoo.detection.transform import ImageBatch
from archzoo.profile import count_params
from detection_helpers import coco_map, shapes_detection

SMALL = dict(num_classes=3, min_size=64, max_size=64, backbone="mobilenet_v2_050", deconv_channels=(96, 64, 32),
             head_channels=32)


def test_paper_architecture():
    model = archzoo.create_model("centernet_resnet18")
    assert model.stride == 4 and model.num_classes == 80
    assert [m[1].out_channels for m in model.neck] == [256, 128, 64]  # 4x4 transposed convs, stride 2
    assert all(m[1].kernel_size == (4, 4) and m[1].stride == (2, 2) for m in model.neck)
    assert torch.allclose(model.heatmap[2].bias, torch.full((80,), -2.19))
    # ResNet-18 without its classifier (11.18M) + the neck and the three heads; the paper lists no count
    millions = count_params(model) / 1e6
    assert 14.0 < millions < 15.0, millions


def test_targets_decode_back_to_the_boxes():
    """Heatmap peaks, sizes and offsets made from ground truth decode to the same boxes (AP 1)."""
    model = archzoo.create_model("centernet_resnet18", **SMALL)
    images, targets = shapes_detection(12, size=64, subset="test")
    heat, size, offset = [], [], []
    for t in targets:
        h, index, wh, off = centre_targets(t["boxes"], t["labels"], 3, (16, 16), 4)
        assert h.max() == 1 and (h.flatten(1).max(0).values.flatten()[index] == 1).all()
        s, o = torch.zeros(2, 256), torch.zeros(2, 256)
        s[:, index], o[:, index] = wh.t(), off.t()
        heat.append(torch.logit(h.clamp(1e-6, 1 - 1e-6)))
        size.append(s.view(2, 16, 16))
        offset.append(o.view(2, 16, 16))
    outputs = {"heatmap": torch.stack(heat), "size": torch.stack(size), "offset": torch.stack(offset)}
    dets = model.detect(outputs, ImageBatch(torch.zeros(12, 3, 64, 64), [(64, 64)] * 12))
    assert coco_map(dets, targets, num_classes=3, iou=0.75) > 0.99


def test_gaussian_radius_grows_with_the_box():
    """CornerNet's radius (the authors' formula, min overlap 0.7): positive, growing with the box."""
    r = gaussian_radius(torch.tensor([4.0, 10.0, 40.0]), torch.tensor([4.0, 10.0, 40.0]))
    assert (r > 0).all() and (r[1:] > r[:-1]).all() and float(r[2]) < 40 * 0.3


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2", "efficientnet_b0"])
def test_other_backbones(backbone):
    model = archzoo.create_model("centernet_resnet18", backbone=backbone, num_classes=3, min_size=64, max_size=64)
    images, targets = shapes_detection(2, size=64)
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"heatmap", "size", "offset"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert out[0]["boxes"].shape[1] == 4 and 0 < len(out[0]["boxes"]) <= 100 and out[0]["labels"].max() < 3





def test_empty_image_trains_without_nan():
    model = archzoo.create_model("centernet_resnet18", **SMALL).train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    images, targets = shapes_detection(1, size=64)
    losses = model([torch.rand(3, 64, 64), images[0]], [empty, targets[0]])
    assert all(torch.isfinite(v) for v in losses.values())
    losses = model([torch.rand(3, 64, 64)], [empty])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("target,match", [
    ({"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([0])}, "no area"),
    ({"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([-1])}, "labels"),
    ({"boxes": torch.tensor([[1.0, float("inf"), 5.0, 5.0]]), "labels": torch.tensor([0])}, "finite"),
])
def test_bad_targets_raise(target, match):
    model = archzoo.create_model("centernet_resnet18", **SMALL).train()
    with pytest.raises(ValueError, match=match):
        model([torch.rand(3, 64, 64)], [target])
