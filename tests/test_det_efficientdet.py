"""EfficientDet: parity with the effdet package, published parameter counts, other backbones,
training on shapes, empty images, bad targets."""

from __future__ import annotations

import warnings

import pytest
import torch

import archzoo
from archzoo.profile import count_params
from detection_helpers import assert_same_detections, shapes_detection
from helpers import randomize_norms

effdet = pytest.importorskip("effdet")
SMALL = dict(image_size=128)  # effdet fixes its resampling sizes at build time: build it at the same size


def _reference(num_classes=None, seed=0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = effdet.create_model("tf_efficientdet_d0", pretrained=False, pretrained_backbone=False,
                                  image_size=(128, 128), num_classes=num_classes)
    randomize_norms(ref, seed)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("edge_weights"):  # unequal fusion weights, so a misplaced input shows
                p.copy_(torch.rand(p.shape) + 0.5)
    return ref


def _flat(outputs, k):
    return torch.cat([o.permute(0, 2, 3, 1).reshape(o.shape[0], -1, k) for o in outputs], 1)


def test_parity_with_effdet(tmp_path):
    from effdet.bench import DetBenchPredict

    ref = _reference()
    with torch.no_grad():
        ref.class_net.predict.conv_pw.bias.add_(4.0)  # confident scores: detections exist
    ref.eval()
    torch.save(ref.state_dict(), tmp_path / "effdet_d0.pth")
    ours = archzoo.create_model("tf_efficientdet_d0", weights=tmp_path / "effdet_d0.pth", **SMALL).eval()
    assert count_params(ours) == count_params(ref)

    images = [torch.rand(3, 100, 80), torch.rand(3, 60, 90)]
    batch, _ = ours.transform(images)
    assert batch.tensors.shape[-2:] == (128, 128)
    with torch.no_grad():
        raw = ours.forward_batch(batch.tensors)
        ref_cls, ref_box = ref(batch.tensors)
        mine = ours(images)
        sizes = torch.tensor([[w, h] for h, w in batch.image_sizes], dtype=torch.float32)  # effdet: (w, h)
        theirs = DetBenchPredict(ref).eval()(batch.tensors, {"img_scale": torch.ones(2), "img_size": sizes})
    ref_cls, ref_box = _flat(ref_cls, 90), _flat(ref_box, 4)
    torch.testing.assert_close(raw["cls"], ref_cls, atol=1e-5 * float(ref_cls.abs().max()), rtol=0)
    torch.testing.assert_close(raw["box"], ref_box, atol=1e-5 * float(ref_box.abs().max()), rtol=0)
    # effdet: [B, 100, 6] rows (x1, y1, x2, y2, score, label + 1) in the resized image; map back as ours does
    dets = [{"boxes": d[d[:, 4] > 0, :4], "scores": d[d[:, 4] > 0, 4], "labels": d[d[:, 4] > 0, 5].long() - 1}
            for d in theirs]
    dets = ours.transform.postprocess(dets, batch.image_sizes, [tuple(i.shape[-2:]) for i in images])
    assert all(len(d["boxes"]) == 100 for d in dets)
    assert_same_detections(mine, dets)


def test_train_losses_equal_effdet(tmp_path):
    from effdet.bench import DetBenchTrain

    ref = _reference(num_classes=3).eval()  # eval: batch norms use the same (randomised) statistics
    torch.save(ref.state_dict(), tmp_path / "effdet_d0_3.pth")
    ours = archzoo.create_model("tf_efficientdet_d0", num_classes=3, weights=tmp_path / "effdet_d0_3.pth", **SMALL)
    ours.eval()
    images, targets = shapes_detection(2, size=128)
    targets.append({"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)})
    images.append(torch.rand(3, 128, 128))
    batch, resized = ours.transform(images, targets)
    mine = ours.loss(ours.forward_batch(batch.tensors), batch, resized)
    n = max(len(t["boxes"]) for t in resized)
    bbox, cls = torch.full((3, n, 4), -1.0), torch.full((3, n), -1.0)
    for i, t in enumerate(resized):  # effdet: yxyx boxes, 1-based labels, -1 padding
        bbox[i, : len(t["boxes"])] = t["boxes"][:, [1, 0, 3, 2]]
        cls[i, : len(t["boxes"])] = t["labels"].float() + 1
    theirs = DetBenchTrain(ref)(batch.tensors, {"bbox": bbox, "cls": cls})
    torch.testing.assert_close(mine["classification"], theirs["class_loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mine["box_regression"], 50.0 * theirs["box_loss"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("key,published", [("d0", 3.9), ("d1", 6.6), ("d2", 8.1), ("d3", 12.0), ("d4", 20.7),
                                           ("d5", 33.7), ("d6", 51.9), ("d7", 51.9)])
def test_parameter_counts_as_published(key, published):
    """The paper's Table 2 (millions, rounded to 0.1), and exactly effdet's models (on the meta device)."""
    name = f"tf_efficientdet_{key}"
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = count_params(archzoo.create_model(name))
        ref = count_params(effdet.create_model(name, pretrained=False, pretrained_backbone=False))
    assert ours == ref
    assert round(ours / 1e6, 1) == published


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_other_backbones(backbone):
    model = archzoo.create_model("tf_efficientdet_d0", backbone=backbone, num_classes=3, image_size=128,
                                 fpn_channels=32, fpn_repeats=1, head_repeats=1)
    images, targets = shapes_detection(2, size=96)
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"classification", "box_regression"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4 and out[0]["labels"].max() < 3





def test_empty_image_trains_without_nan():
    model = archzoo.create_model("tf_efficientdet_d0", backbone="mobilenet_v2_050", num_classes=3, image_size=128,
                                 fpn_channels=32, fpn_repeats=1, head_repeats=1)
    images = [torch.rand(3, 64, 64), torch.rand(3, 64, 80)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    model.train()
    losses = model(images, [empty, dict(empty)])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("target,match", [
    ({"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([0])}, "no area"),
    ({"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([3])}, "labels"),
    ({"boxes": torch.tensor([[1.0, float("nan"), 5.0, 5.0]]), "labels": torch.tensor([0])}, "finite"),
    ({"boxes": torch.tensor([1.0, 1.0, 5.0, 5.0]), "labels": torch.tensor([0])}, r"\[k, 4\]"),
])
def test_bad_targets_raise(target, match):
    model = archzoo.create_model("tf_efficientdet_d0", backbone="mobilenet_v2_050", num_classes=3, image_size=128,
                                 fpn_channels=32, fpn_repeats=1, head_repeats=1).train()
    with pytest.raises(ValueError, match=match):
        model([torch.rand(3, 64, 64)], [target])
