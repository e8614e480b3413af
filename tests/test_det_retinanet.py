"""RetinaNet (torchvision ``retinanet_resnet50_fpn`` parity), the anchor generator and the FPN neck.

The helpers ``_parity`` and ``_counts`` are shared with ``test_det_fcos.py``."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.detection.anchors import AnchorGenerator, octave_sizes
from archzoo.detection.necks import FPN
from archzoo.profile import count_gflops, count_params
from archzoo.weights import build_reference
from detection_helpers import assert_same_detections, shapes_detection
from helpers import randomize_norms

SMALL = dict(min_size=160, max_size=256)  # the transform's sizes for the parity checks: seconds, not minutes


def _targets():
    """One image with two objects (labels in torchvision's 1..90 COCO range, kept as they are), one empty."""
    return [{"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0], [50.0, 30.0, 125.0, 100.0]]), "labels": torch.tensor([1, 5])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]


def _parity(name: str, tmp_path, logit_bias: str):
    """torchvision's reference with random weights and norms, class logits raised so that detections
    exist, saved to a file and loaded by archzoo: the same detections (eval) and losses (train)."""
    torch.manual_seed(0)
    ref = build_reference(model_card(name).reference)
    randomize_norms(ref)
    with torch.no_grad():
        ref.get_parameter(logit_bias).add_(2.5)
    ref.transform.min_size, ref.transform.max_size = (SMALL["min_size"],), SMALL["max_size"]
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    ours = archzoo.create_model(name, weights=path, **SMALL)
    assert count_params(ours) == count_params(ref)
    images = [torch.rand(3, 120, 170, generator=torch.Generator().manual_seed(1)),
              torch.rand(3, 150, 130, generator=torch.Generator().manual_seed(2))]
    with torch.no_grad():
        mine, theirs = ours.eval()(images), ref.eval()(images)
    assert_same_detections(mine, theirs)
    losses, ref_losses = ours.train()(images, _targets()), ref.train()(images, _targets())  # batch statistics in both
    assert set(losses) == set(ref_losses)
    for k in losses:
        torch.testing.assert_close(losses[k], ref_losses[k], rtol=1e-5, atol=1e-6, msg=k)
    return mine


def _frozen_same_maps(name: str) -> None:
    """``norm_layer="frozen_batchnorm"`` (torchvision's choice with pretrained backbones) computes the
    batch-norm model's eval outputs: the same head maps within float rounding (the detections of a
    random model with near-tied scores may then swap order, so the maps are compared)."""
    torch.manual_seed(0)
    bn = randomize_norms(archzoo.create_model(name, backbone="resnet18", num_classes=3)).eval()
    frozen = archzoo.create_model(name, backbone="resnet18", num_classes=3, norm_layer="frozen_batchnorm").eval()
    frozen.load_state_dict({k: v for k, v in bn.state_dict().items() if not k.endswith("num_batches_tracked")})
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        a, b = bn.forward_batch(x), frozen.forward_batch(x)
    for key in a:
        for u, v in zip(a[key], b[key]):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def model_card(name):
    return archzoo.model_card(name)


def _counts(name: str) -> tuple[int, float, dict]:
    """Parameters (frozen batch norm, as torchvision's COCO weights) and GFLOPs at 800x800, measured
    on the meta device; and torchvision's published figures for the same model (metadata only)."""
    import torchvision

    with torch.device("meta"):
        model = archzoo.create_model(name, norm_layer="frozen_batchnorm")
    meta = torchvision.models.get_model_weights(model_card(name).reference_name).DEFAULT.meta
    return count_params(model), count_gflops(model, (3, 800, 800)), meta  # GFLOPs of forward_batch



def _on_backbones(name: str, backbones=("resnet18", "mobilenet_v2")) -> None:
    images, targets = shapes_detection(2, size=64)
    for backbone in backbones:
        model = archzoo.create_model(name, num_classes=3, backbone=backbone, min_size=64, max_size=96)
        losses = model.train()(images, targets)
        assert all(torch.isfinite(v) for v in losses.values()), backbone
        sum(losses.values()).backward()
        with torch.no_grad():
            out = model.eval()(images)
        assert len(out) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in out), backbone


def _empty_images_train(name: str) -> None:
    model = archzoo.create_model(name, num_classes=3, backbone="resnet18", min_size=64, max_size=64).train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(images, [empty, dict(empty)])
    total = sum(losses.values())
    assert torch.isfinite(total) and float(total) > 0  # the background still teaches the classifier
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _bad_targets(name: str) -> None:
    model = archzoo.create_model(name, num_classes=3, backbone="resnet18", min_size=64, max_size=64).train()
    images = [torch.rand(3, 64, 64)]
    box = torch.tensor([[5.0, 5.0, 30.0, 30.0]])
    with pytest.raises(ValueError, match="labels must be int64 in 0..2"):
        model(images, [{"boxes": box, "labels": torch.tensor([3])}])  # K classes: labels 0..K-1
    with pytest.raises(ValueError, match="has no area"):
        model(images, [{"boxes": torch.tensor([[30.0, 5.0, 10.0, 30.0]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="finite"):
        model(images, [{"boxes": torch.tensor([[5.0, float("nan"), 30.0, 30.0]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        archzoo.create_model(name, num_classes=0, backbone="resnet18")


# --- the shared parts ----------------------------------------------------------------------------------------


def test_anchor_generator_equals_torchvision_number_for_number():
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors
    from torchvision.models.detection.image_list import ImageList

    sizes = octave_sizes()
    assert sizes[0] == (32, 40, 50) and sizes[-1] == (512, 645, 812)  # torchvision's int(x * 2^(i/3))
    for sizes, ratios in ((sizes, (0.5, 1.0, 2.0)), (((8,), (16,), (32,), (64,), (128,)), (1.0,))):
        ours, theirs = AnchorGenerator(sizes, ratios), TVAnchors(sizes, (ratios,) * len(sizes))
        for h, w in ((224, 320), (800, 1216)):  # 224: P6/P7 strides are not 64/128 (224 // 4 = 56), as in torchvision
            maps = [torch.zeros(1, 1, -(-h // s), -(-w // s)) for s in (8, 16, 32, 64, 128)]
            expected = TVAnchors.forward(theirs, ImageList(torch.zeros(1, 3, h, w), [(h, w)]), maps)[0]
            assert torch.equal(torch.cat(ours((h, w), [m.shape[-2:] for m in maps])), expected)
    assert AnchorGenerator(octave_sizes()).num_anchors_per_location() == [9] * 5
    with pytest.raises(ValueError, match="levels"):
        AnchorGenerator(octave_sizes())((64, 64), [(8, 8)])


def test_fpn_takes_only_a_channel_list_and_adds_p6_p7():
    maps = [torch.rand(1, 24, 16, 20), torch.rand(1, 40, 8, 10), torch.rand(1, 80, 4, 5)]
    for extra_from in ("p5", "c5"):
        fpn = FPN([24, 40, 80], 32, extra_levels=2, extra_from=extra_from)
        out = fpn(maps)
        assert [tuple(o.shape) for o in out] == [(1, 32, 16, 20), (1, 32, 8, 10), (1, 32, 4, 5), (1, 32, 2, 3), (1, 32, 1, 2)]
    assert fpn.extra[0].in_channels == 80  # from C5 (the paper), not P5 (torchvision)
    # top-down: the coarsest map reaches the finest level (and no further: P5 ignores C3)
    fpn = FPN([24, 40, 80], 32)
    base = fpn(maps)
    changed = fpn([maps[0], maps[1], maps[2] + 1])
    assert not torch.allclose(base[0], changed[0])
    changed = fpn([maps[0] + 1, maps[1], maps[2]])
    assert torch.equal(base[2], changed[2])


# --- RetinaNet ------------------------------------------------------------------------------------------------


def test_retinanet_equals_torchvision(tmp_path):
    _parity("retinanet_resnet50_fpn", tmp_path, "head.classification_head.cls_logits.bias")


def test_retinanet_with_frozen_batchnorm_computes_the_same_maps():
    _frozen_same_maps("retinanet_resnet50_fpn")


def test_retinanet_parameters_and_gflops_as_torchvision_publishes():
    params, gflops, meta = _counts("retinanet_resnet50_fpn")
    assert params == meta["num_params"] == 34_014_999
    assert gflops == pytest.approx(meta["_ops"], abs=0.01)  # 151.54 at 800x800


def test_retinanet_head_sizes_and_prior_for_a_k_class_dataset():
    model = archzoo.create_model("retinanet_resnet50_fpn", num_classes=3, backbone="resnet18")
    assert model.head.cls_logits.out_channels == 9 * 3 and model.head.box_reg.out_channels == 9 * 4
    assert float(torch.sigmoid(model.head.cls_logits.bias.detach()[0])) == pytest.approx(0.01)  # the prior probability
    assert model.card.default_weights.num_classes == 91


def test_retinanet_on_other_backbones():
    _on_backbones("retinanet_resnet50_fpn")



def test_retinanet_image_without_objects_trains():
    _empty_images_train("retinanet_resnet50_fpn")


def test_retinanet_bad_targets_raise():
    _bad_targets("retinanet_resnet50_fpn")
