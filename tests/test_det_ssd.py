"""SSD300-VGG16 (Liu et al. 2015): the default boxes number for number against torchvision's
generator, identical detections and losses against torchvision's ``ssd300_vgg16`` with converted
weights, torchvision's published parameter count and GFLOPs, other zoo backbones, the label
layouts, training on ``shapes``, and clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.detection.default_boxes import DefaultBoxGenerator
from archzoo.profile import count_gflops, count_params
from archzoo.weights import build_reference
from detection_helpers import (assert_same_detections, random_images)
from helpers import randomize_norms

TARGETS = [  # in the pixels of the two images of _images()
    {"boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0], [50.0, 50.0, 90.0, 170.0]]), "labels": torch.tensor([3, 7])},
    {"boxes": torch.tensor([[5.0, 5.0, 60.0, 40.0]]), "labels": torch.tensor([1])},
]


def _images() -> list[torch.Tensor]:
    return random_images(1, size=(3, 200, 240), seed=1) + random_images(1, size=(3, 180, 150), seed=2)


class ForwardBatch(nn.Module):
    """The detector's network alone (normalised batch in, head outputs out) for archzoo.profile:
    resizing, decoding and NMS count no multiply-adds."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, x):
        return self.detector.forward_batch(x)


def reference_with_detections(name: str, seed: int = 0) -> nn.Module:
    """torchvision's model with random weights, randomised norms and the logits of labels 1-5 raised
    (detections of several classes; the other classes stay under the score threshold, which keeps
    NMS small)."""
    torch.manual_seed(seed)
    ref = build_reference(archzoo.model_card(name).reference).eval()
    randomize_norms(ref, seed)
    with torch.no_grad():
        for m in ref.head.classification_head.module_list:
            last = m if isinstance(m, nn.Conv2d) else m[-1]
            last.bias.view(-1, 91)[:, 1:6] += 6.0
    return ref


def check_parity(name: str, tmp_path, n: int = 2, **kwargs) -> None:
    """Detections (eval) and losses (train) equal the reference's on ``n`` images (SSD resizes every
    image to one fixed size, so one image of another shape adds little but time)."""
    ref = reference_with_detections(name)
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    ours = archzoo.create_model(name, weights=path, **kwargs).eval()
    assert count_params(ours) == count_params(ref)
    images, targets = _images()[:n], TARGETS[:n]
    with torch.no_grad():
        assert_same_detections(ours(images), ref(images))
        ours.train(), ref.train()
        torch.manual_seed(0)
        mine = ours(images, targets)
        torch.manual_seed(0)
        theirs = ref(images, targets)
    assert mine.keys() == theirs.keys()
    for k in theirs:
        torch.testing.assert_close(mine[k], theirs[k], rtol=1e-5, atol=1e-5, msg=k)


def published(name: str) -> tuple[int, float]:
    from torchvision.models import get_model_weights

    meta = get_model_weights(archzoo.model_card(name).reference_name).DEFAULT.meta  # metadata: nothing downloaded
    return meta["num_params"], meta["_ops"]


def measured(name: str, **kwargs) -> tuple[int, float]:
    with torch.device("meta"):
        model = archzoo.create_model(name, **kwargs)
        return count_params(model), count_gflops(ForwardBatch(model), archzoo.model_card(name).input_size)


# --- default boxes ----------------------------------------------------------------------------

@pytest.mark.parametrize("config, grids, image", [
    (dict(aspect_ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]], scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
          steps=[8, 16, 32, 64, 100, 300]), [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)], (300, 300)),
    (dict(aspect_ratios=[[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95), [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)],
     (320, 320)),
    (dict(aspect_ratios=[[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95), [(6, 8), (3, 4), (2, 2), (1, 1), (1, 1), (1, 1)],
     (96, 128)),
    (dict(aspect_ratios=[[2], [3]], min_ratio=0.3, max_ratio=0.9, clip=False), [(4, 3), (2, 2)], (64, 48)),
])
def test_default_boxes_equal_torchvision_number_for_number(config, grids, image):
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator as TorchvisionBoxes
    from torchvision.models.detection.image_list import ImageList

    ours = DefaultBoxGenerator(**config)(image, grids)
    maps = [torch.zeros(1, 1, *g) for g in grids]
    theirs = TorchvisionBoxes(**config)(ImageList(torch.zeros(1, 3, *image), [image]), maps)[0]
    assert torch.equal(ours, theirs)
    assert ours.shape[0] == sum(g[0] * g[1] * n for g, n in zip(grids, DefaultBoxGenerator(**config).num_anchors_per_location()))


def test_default_boxes_scales_follow_the_paper():
    boxes = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.9)
    assert boxes.scales == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9, 1.0])
    wh = boxes.sizes[0]
    assert wh[1].tolist() == pytest.approx([(0.2 * 0.34) ** 0.5] * 2)  # the extra box sqrt(s_k s_k+1)
    assert (wh[2, 0] / wh[2, 1]).item() == pytest.approx(2.0) and (wh[3, 1] / wh[3, 0]).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="scales"):
        DefaultBoxGenerator([[2]] * 3, scales=[0.1, 0.2])


# --- SSD300-VGG16 -----------------------------------------------------------------------------

def test_ssd300_vgg16_is_torchvisions_with_converted_weights(tmp_path):
    check_parity("ssd300_vgg16", tmp_path, n=1)  # VGG-16 at 300 px: the heaviest parity case


def test_ssd300_vgg16_params_and_gflops_are_torchvisions():
    params, gflops = published("ssd300_vgg16")  # 35,641,826 and 34.858
    ours_params, ours_gflops = measured("ssd300_vgg16")
    assert ours_params == params
    assert abs(ours_gflops - gflops) <= 0.0005 + 0.001 * gflops, (ours_gflops, gflops)


def test_ssd300_vgg16_is_built_from_the_zoo_vgg16_modules():
    with torch.device("meta"):
        model = archzoo.create_model("ssd300_vgg16")
    body = model.backbone.model
    assert [n for n, _ in body.named_children()] == ["stages"] and len(body.stages) == 5
    assert body.stages[3].pool.ceil_mode  # pool3 rounds up: 38x38 conv4_3 at 300
    fc6 = model.neck.fc[1].conv
    assert fc6.dilation == (6, 6) and fc6.kernel_size == (3, 3) and model.neck.fc[0].stride == 1
    assert model.neck.l2norm.weight.shape == (512,)
    with torch.device("meta"):
        maps = model.neck(model.backbone(torch.empty(1, 3, 300, 300)))
    assert [m.shape[-1] for m in maps] == [38, 19, 10, 5, 3, 1]
    with torch.device("meta"):
        vgg = archzoo.create_model("vgg16")
    # conv1_1 .. conv5_3 under the classifier's own names, with its shapes
    ours = {k: v.shape for k, v in body.state_dict().items()}
    assert ours == {k: v.shape for k, v in vgg.state_dict().items() if k.startswith("stages.")}


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v2"])
def test_ssd300_on_other_zoo_backbones_trains_and_detects(backbone):
    torch.manual_seed(0)
    model = archzoo.create_model("ssd300_vgg16", backbone=backbone, num_classes=4, image_size=272)
    images, targets = _images(), [{**t, "labels": t["labels"] % 4} for t in TARGETS]
    losses = model(images, targets)
    assert set(losses) == {"bbox_regression", "classification"} and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and out[0]["boxes"].shape[1] == 4
    assert out[0]["boxes"][:, 2].max() <= 240 and out[1]["boxes"][:, 3].max() <= 180  # the original images' pixels


def test_label_layouts_torchvision_coco_and_a_fresh_k_class_detector():
    with torch.device("meta"):
        coco = archzoo.create_model("ssd300_vgg16")
        fresh = archzoo.create_model("ssd300_vgg16", num_classes=3)
    assert coco.background_label0 and coco.head.classification[0].out_channels == 4 * 91
    assert not fresh.background_label0 and fresh.head.classification[0].out_channels == 4 * (3 + 1)


def test_a_fresh_detector_has_0_based_labels_and_its_own_background_logit():
    """Class i is logit i + 1, the background logit 0: raising one class's logits makes every
    detection that class, and lowers the loss of targets of that class."""
    torch.manual_seed(0)
    model = archzoo.create_model("ssdlite320_mobilenet_v2", backbone="mobilenet_v2_035", num_classes=2,
                                 image_size=64, score_thresh=0.3)
    images = random_images(2, size=(3, 64, 64))
    targets = [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 40.0]]), "labels": torch.tensor([c])} for c in (0, 0)]
    for cls in (0, 1):
        with torch.no_grad():
            for conv in (m[1] for m in model.head.classification):
                bias = conv.bias.view(-1, 3)
                bias.zero_()
                bias[:, cls + 1] = 5.0
        model.eval()
        with torch.no_grad():
            labels = torch.cat([d["labels"] for d in model(images)])
            model.train()
            loss = model(images, targets)["classification"]
        assert labels.numel() and (labels == cls).all()
        if cls == 0:
            loss_when_class_0 = loss
    assert loss_when_class_0 < loss  # the targets are class 0


def test_ssd300_reports_bad_targets_and_the_coco_background_label():
    torch.manual_seed(0)
    model = archzoo.create_model("ssd300_vgg16", backbone="mobilenet_v2_035", image_size=272)  # COCO layout
    images = _images()
    with pytest.raises(ValueError, match="label 0 is the background"):
        model(images, [TARGETS[0], {"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match="has no area"):
        model(images, [TARGETS[0], {"boxes": torch.tensor([[5.0, 5.0, 5.0, 9.0]]), "labels": torch.tensor([1])}])
    with pytest.raises(ValueError, match=r"labels must be int64 in 0\.\.90"):
        model(images, [TARGETS[0], {"boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]), "labels": torch.tensor([91])}])
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    with pytest.raises(ValueError, match="image_size"):
        archzoo.create_model("ssd300_vgg16", backbone="mobilenet_v2_035", image_size=(300, 0))


def test_ssd300_trains_on_an_image_without_objects():
    torch.manual_seed(0)
    model = archzoo.create_model("ssd300_vgg16", backbone="mobilenet_v2_035", num_classes=3, image_size=272)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = model(_images(), [empty, {"boxes": torch.tensor([[5.0, 5.0, 60.0, 40.0]]), "labels": torch.tensor([2])}])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    only_empty = model(_images()[:1], [empty])  # no positive anywhere: zero loss, no NaN
    assert all(float(v.detach()) == 0.0 for v in only_empty.values())
