"""Two-stage detectors: Faster R-CNN and Mask R-CNN against torchvision (detections, masks, training
losses, parameter counts), the parts (sampler, mask pasting, the FPN's pool level) and the proposer
interface other proposers plug into."""

from __future__ import annotations

import pytest
import torch
import torchvision

import archzoo
from archzoo.detection.necks import FPN
from archzoo.detection.roi_heads import BoxPredictor, RoIHeads, RoIPool, TwoFCHead, paste_masks
from archzoo.detection.samplers import BalancedSampler
from archzoo.detection.transform import DetectionTransform
from archzoo.detection.two_stage import TwoStageDetector
from archzoo.profile import count_params
from detection_helpers import assert_same_detections, shapes_detection
from helpers import randomize_norms

# both sides get the same small settings: 128-192 px, fewer proposals and detections (seconds, not minutes)
OURS = dict(min_size=128, max_size=192, rpn_pre_nms_top_n=(300, 200), rpn_post_nms_top_n=(200, 100),
            box_batch_size_per_image=64, box_detections_per_img=30)
THEIRS = dict(min_size=128, max_size=192, rpn_pre_nms_top_n_train=300, rpn_pre_nms_top_n_test=200,
              rpn_post_nms_top_n_train=200, rpn_post_nms_top_n_test=100, box_batch_size_per_image=64,
              box_detections_per_img=30)


@pytest.fixture(autouse=True)
def _flush_denormals():
    """Random weights under random norms leave denormal activations deep in the backbones, which a CPU
    computes several times slower; flushed to zero in both models alike, nothing compared changes."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


def _images():
    return [torch.rand(3, 120, 170, generator=torch.Generator().manual_seed(1)),
            torch.rand(3, 150, 130, generator=torch.Generator().manual_seed(2))]


def _targets(masks: bool):
    """One image with two objects (torchvision's COCO labels, kept as they are), one without."""
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0], [50.0, 30.0, 125.0, 100.0]]), "labels": torch.tensor([1, 5])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    if masks:
        m = torch.zeros(2, 120, 170, dtype=torch.uint8)
        m[0, 25:85, 15:75] = 1
        m[1, 35:95, 60:120] = 1
        targets[0]["masks"], targets[1]["masks"] = m, torch.zeros(0, 150, 130, dtype=torch.uint8)
    return targets


def _parity(name: str, tmp_path):
    """torchvision's model with random weights and norms, its predictors tamed so that proposals spread
    and five classes score above the threshold, saved and loaded by archzoo: the same detections (and
    masks) in eval, the same losses in training with the same random draws."""
    torch.manual_seed(0)
    ref = torchvision.models.get_model(archzoo.model_card(name).reference_name, weights=None, weights_backbone=None,
                                       **THEIRS)
    randomize_norms(ref)
    with torch.no_grad():  # random deltas would throw every box to the image's border
        for w in (ref.rpn.head.bbox_pred.weight, ref.rpn.head.cls_logits.weight,
                  ref.roi_heads.box_predictor.bbox_pred.weight, ref.roi_heads.box_predictor.cls_score.weight):
            w.mul_(0.01)
        ref.roi_heads.box_predictor.cls_score.bias[1:6] += 4.0
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    ours = archzoo.create_model(name, weights=path, **OURS)
    assert count_params(ours) == count_params(ref)
    images = _images()
    with torch.no_grad():
        mine, theirs = ours.eval()(images), ref.eval()(images)
    assert_same_detections(mine, theirs, atol=1e-5)
    for a, b in zip(mine, theirs):
        assert b["boxes"].shape[0] >= 10
        if "masks" in b:
            assert a["masks"].shape == b["masks"].shape == (b["boxes"].shape[0], 1, *b["masks"].shape[-2:])
            torch.testing.assert_close(a["masks"], b["masks"], atol=1e-5, rtol=0)
    # training: torchvision draws a random number per image for its one min_size; without that draw both
    # samplers (RPN anchors, then RoIs) see the same random stream
    ref.transform.torch_choice = lambda sizes: sizes[-1]
    has_masks = "masks" in theirs[0]
    torch.manual_seed(3)
    ref_losses = ref.train()(images, _targets(has_masks))
    torch.manual_seed(3)
    losses = ours.train()(images, _targets(has_masks))
    assert set(losses) == set(ref_losses)
    for k in losses:
        torch.testing.assert_close(losses[k], ref_losses[k], rtol=1e-5, atol=1e-6, msg=k)
    return mine


def test_faster_rcnn_resnet50_fpn_equals_torchvision(tmp_path):
    _parity("fasterrcnn_resnet50_fpn", tmp_path)


def test_faster_rcnn_mobilenet_v3_large_fpn_equals_torchvision(tmp_path):
    _parity("fasterrcnn_mobilenet_v3_large_fpn", tmp_path)


def test_mask_rcnn_equals_torchvision_with_masks_in_image_pixels(tmp_path):
    out = _parity("maskrcnn_resnet50_fpn", tmp_path)
    masks = out[0]["masks"]
    assert masks.dtype == torch.float32 and 0 <= float(masks.min()) and float(masks.max()) <= 1
    assert masks.shape[-2:] == (120, 170)  # the original image's size


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn",
                                  "fasterrcnn_mobilenet_v3_large_320_fpn", "maskrcnn_resnet50_fpn"])
def test_parameters_as_torchvision_publishes(name):
    """torchvision's COCO weights have a frozen batch norm (no affine parameters counted as such)."""
    with torch.device("meta"):
        model = archzoo.create_model(name, norm_layer="frozen_batchnorm")
    meta = torchvision.models.get_model_weights(archzoo.model_card(name).reference_name).DEFAULT.meta
    assert count_params(model) == meta["num_params"]


def test_vgg16_is_the_papers_detector():
    with torch.device("meta"):
        model = archzoo.create_model("fasterrcnn_vgg16")
    assert model.proposer.anchor_generator.num_anchors_per_location() == [9]  # 3 sizes x 3 ratios
    pool = model.roi_heads.box_pool
    assert (pool.kind, pool.output_size, pool.spatial_scale) == ("pool", 7, 1 / 16)
    assert model.roi_heads.box_head.fc6.in_features == 512 * 7 * 7 and model.roi_heads.box_head.fc7.out_features == 4096
    assert model.num_classes == 91 and model.roi_heads.box_predictor.cls_score.out_features == 91
    assert 130e6 < count_params(model) < 140e6  # the paper's ~137M


# --- parts --------------------------------------------------------------------------------------------------------


def test_balanced_sampler_draws_at_most_the_positive_fraction():
    torch.manual_seed(0)
    labels = torch.cat([torch.ones(300), torch.zeros(1000), -torch.ones(50)])
    pos, neg = BalancedSampler(256, 0.5)(labels)
    assert int(pos.sum()) == 128 and int(neg.sum()) == 128
    assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())  # ignored (-1) never drawn
    pos, neg = BalancedSampler(256, 0.5)(torch.cat([torch.ones(10), torch.zeros(1000)]))
    assert int(pos.sum()) == 10 and int(neg.sum()) == 246  # too few positives: negatives fill the batch
    pos, neg = BalancedSampler(512, 0.25)(torch.zeros(100))
    assert int(pos.sum()) == 0 and int(neg.sum()) == 100
    with pytest.raises(ValueError, match="positive_fraction"):
        BalancedSampler(256, 1.5)


def test_paste_masks_equals_torchvision():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    g = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 1, 28, 28, generator=g)
    boxes = torch.tensor([[10.3, 5.2, 40.9, 33.3], [-8.0, -3.5, 20.2, 12.0], [50.0, 30.0, 90.0, 70.0],
                          [0.0, 0.0, 0.5, 0.5], [70.0, 55.0, 69.5, 80.0]])  # inside, cut, across, tiny, empty
    ours, theirs = paste_masks(masks, boxes, (60, 75)), paste_masks_in_image(masks, boxes, (60, 75))
    assert ours.shape == (5, 1, 60, 75) and torch.equal(ours, theirs)
    assert paste_masks(masks[:0], boxes[:0], (60, 75)).shape == (0, 1, 60, 75)


def test_fpn_pool_level_is_torchvisions_last_level_max_pool():
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    maps = [torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 32, 5, 5)]
    out = FPN([8, 16, 32], 24, pool_level=True)(maps)
    assert [o.shape[-1] for o in out] == [16, 8, 5, 3]
    assert torch.equal(out[-1], LastLevelMaxPool()([out[2]], [], [])[0][-1])


# --- the proposer interface ---------------------------------------------------------------------------------------


class FixedProposals(torch.nn.Module):
    """A proposer that learns nothing (as selective search): the same boxes for every image, in the
    resized image's pixels; optionally returns maps of its own for the RoI heads."""

    def __init__(self, boxes, scale_maps: float | None = None):
        super().__init__()
        self.boxes, self.scale_maps = boxes, scale_maps

    def forward(self, batch, maps, targets=None):
        proposals = [self.boxes.clone() for _ in batch.image_sizes]
        if self.scale_maps is None:
            return proposals, {}
        return proposals, {}, {k: v * self.scale_maps for k, v in maps.items()}


def _fast_rcnn(proposer):
    """Fast R-CNN from the parts: a zoo backbone's stride-16 map, RoI max pooling, two FC layers."""
    torch.manual_seed(0)
    backbone = archzoo.create_model("resnet18", features_only=True, out_strides=(16,))
    heads = RoIHeads(RoIPool("0", 7, 1 / 16, "pool"), TwoFCHead(256 * 49, 64), BoxPredictor(64, 3 + 1),
                     batch_size_per_image=32)
    transform = DetectionTransform(64, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return TwoStageDetector(3, transform, backbone, proposer, heads)


def test_a_proposer_without_learning_plugs_in():
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [16.0, 16.0, 60.0, 60.0], [5.0, 30.0, 40.0, 63.0]])
    model = _fast_rcnn(FixedProposals(boxes))
    images, targets = shapes_detection(2, size=64, classes=3)
    losses = model.train()(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    sum(losses.values()).backward()
    assert model.backbone.model.stem.conv.conv.weight.grad is not None  # the RoI heads train the backbone
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert all(set(d) == {"boxes", "scores", "labels"} and len(d["boxes"]) <= 3 * 3 for d in out)
    # proposals map to the detections' boxes: with zero deltas the detections are the proposals
    with torch.no_grad():
        model.roi_heads.box_predictor.bbox_pred.weight.zero_()
        model.roi_heads.box_predictor.bbox_pred.bias.zero_()
        det = model([images[0]])[0]
    assert all(any(torch.allclose(b, p) for p in boxes) for b in det["boxes"])
    # the optional third item replaces the maps the RoI heads see
    other = _fast_rcnn(FixedProposals(boxes, scale_maps=0.0)).eval()
    with torch.no_grad():
        logits = {}
        other.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: logits.update(x=i[0]))
        other([images[0]])
    assert torch.allclose(logits["x"], logits["x"][:1].expand_as(logits["x"]))  # zero maps: one feature for all


def test_labels_are_torchvisions_for_91_classes_and_0_based_otherwise():
    coco = archzoo.create_model("fasterrcnn_resnet50_fpn", backbone="resnet18", min_size=64, max_size=64)
    assert coco.roi_heads.label_offset == 0 and coco.roi_heads.box_predictor.cls_score.out_features == 91
    small = archzoo.create_model("fasterrcnn_resnet50_fpn", num_classes=3, backbone="resnet18")
    assert small.roi_heads.label_offset == 1 and small.roi_heads.box_predictor.cls_score.out_features == 4
    images = [torch.rand(3, 64, 64)]
    with pytest.raises(ValueError, match="label 0 is the background"):
        coco.train()(images, [{"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([0])}])


def test_mask_rcnn_needs_masks_of_the_images_size():
    model = archzoo.create_model("maskrcnn_resnet50_fpn", num_classes=3, backbone="resnet18", min_size=64,
                                 max_size=64).train()
    images = [torch.rand(3, 64, 64)]
    box = {"boxes": torch.tensor([[5.0, 5.0, 30.0, 30.0]]), "labels": torch.tensor([1])}
    with pytest.raises(ValueError, match="needs 'masks'"):
        model(images, [box])
    with pytest.raises(ValueError, match=r"masks must be \[k, H, W\] = \[1, 64, 64\]"):
        model(images, [{**box, "masks": torch.zeros(1, 32, 32)}])
    with pytest.raises(ValueError, match="mask_pool, mask_head and mask_predictor together"):
        RoIHeads(RoIPool("0", 7, 1 / 16), TwoFCHead(49, 8), BoxPredictor(8, 2), mask_pool=RoIPool("0", 14, 1 / 16))


def test_other_backbones_train_and_detect():
    images, targets = shapes_detection(2, size=64, classes=3)
    for name, backbone in (("fasterrcnn_resnet50_fpn", "resnet18"), ("fasterrcnn_vgg16", "mobilenet_v2_035"),
                           ("fasterrcnn_mobilenet_v3_large_fpn", "mobilenet_v2_035")):
        options = {} if name != "fasterrcnn_mobilenet_v3_large_fpn" else {"backbone_args": {}}
        model = archzoo.create_model(name, num_classes=3, backbone=backbone, min_size=64, max_size=96, **options)
        losses = model.train()(images, targets)
        assert all(torch.isfinite(v) for v in losses.values()), name
        sum(losses.values()).backward()
        with torch.no_grad():
            out = model.eval()(images)
        assert len(out) == 2 and all(set(d) == {"boxes", "scores", "labels"} for d in out), name
