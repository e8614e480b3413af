"""R-CNN and Fast R-CNN: selective search (boxes, bounds, determinism, the cache, the mapping back
from the shrunk image), R-CNN's region warping with context and its one CNN forward per region,
Fast R-CNN's one backbone forward per image, ``archzoo train / eval / predict`` end to end, and bad
input. That both detectors learn (loss falls, AP@0.5 floors on a few ``shapes`` images) is checked
with every other detector in ``test_detectors.py`` (``rcnn_alexnet``: floor 0.5, measured 0.93;
``fast_rcnn_resnet50``: floor 0.3, measured 1.0).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import archzoo
from archzoo.detection import selective_search as ss
from archzoo.detection.rcnn import WarpedRegionFeatures, context_boxes
from archzoo.detection.selective_search import ProposalCache, SelectiveSearchProposer, selective_search
from archzoo.detection.transform import ImageBatch

from detection_helpers import shapes_detection
from test_detection_data import write_shapes
from test_robustness_helpers import run_cli

# a narrow AlexNet on 64 px warps: R-CNN's code at a CPU-test size
TINY_RCNN = dict(image_size=64, proposals=40, warp_size=64, context_padding=4, batch_size_per_image=32,
                 backbone_kwargs=dict(widths=(16, 32, 48, 32, 32), hidden=(64, 64), drop_rate=0.0))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small per-region convolutions: with one thread no core waits on another (a shared CI machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes():
    return shapes_detection(4, size=64, subset="train", objects=(1, 3), classes=3)


# ---------------------------------------------------------------- selective search


def test_selective_search_boxes_lie_in_the_image_bounded_and_deterministic(shapes):
    images, targets = shapes
    image = F.interpolate(images[0][None], size=(64, 96), mode="bilinear")[0]  # not square
    boxes = selective_search(image, max_boxes=20, min_size=3)
    assert boxes.dtype == torch.float32 and boxes.dim() == 2 and boxes.shape[1] == 4 and 1 <= len(boxes) <= 20
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 2] <= 96).all() and (boxes[:, 3] <= 64).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 3).all()  # thin boxes dropped
    assert len(torch.unique(boxes, dim=0)) == len(boxes)  # no duplicates
    selective_search(images[1])  # another search in between: the ranking does not depend on what ran before
    assert torch.equal(selective_search(image, max_boxes=20, min_size=3), boxes)  # same boxes, same order
    # the flat-coloured shapes are found: every object has a proposal overlapping it by IoU >= 0.7
    from torchvision.ops import box_iou

    for img, t in zip(images, targets):
        assert box_iou(t["boxes"], selective_search(img, max_boxes=100)).max(1).values.min() >= 0.7
    # the paper's "quality" diversification searches more strategies: more boxes than "fast"
    assert len(selective_search(images[0], mode="quality", max_boxes=2000)) > len(selective_search(images[0]))


def test_boxes_come_back_in_the_given_images_pixels(shapes):
    """Searched on the image shrunk to ``max_side``, boxes are scaled back: a 2x nearest-neighbour
    enlargement shrunk to the original size gives the original's boxes times 2."""
    image = shapes[0][1]
    pixels = (image * 255).round().to(torch.uint8)
    large = pixels.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # [3, 128, 128], 2x2 blocks
    small = selective_search(pixels, max_boxes=500, min_size=0)
    back = selective_search(large, max_side=64, max_boxes=500, min_size=0)
    assert torch.equal(back, small * 2)
    hwc = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())  # an [H, W, 3] uint8 array works too
    assert torch.equal(selective_search(hwc, max_boxes=500, min_size=0), small)


def test_the_cache_serves_repeated_images(shapes, monkeypatch):
    images = shapes[0]
    calls = []
    search = ss._search
    monkeypatch.setattr(ss, "_search", lambda *a: calls.append(1) or search(*a))
    cache = ProposalCache(max_images=2)
    first = selective_search(images[0], cache=cache)
    again = selective_search(images[0].clone(), cache=cache)  # same content, another tensor
    assert torch.equal(first, again) and len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    again[0, 0] = -1.0  # what the cache hands out is a copy
    assert torch.equal(selective_search(images[0], cache=cache), first)
    selective_search(images[0], cache=cache, max_boxes=5)  # other settings: another entry
    selective_search(images[1], cache=cache)  # a third entry: the least recently used goes
    assert len(calls) == 3 and len(cache) == 2
    selective_search(images[0], cache=cache)
    assert len(calls) == 4

    # the proposer in a detector: a second epoch over the same images searches nothing
    model = archzoo.create_model("rcnn_alexnet", num_classes=3, **TINY_RCNN)
    calls.clear()
    targets = shapes[1]
    for _ in range(2):
        model.train()(images[:2], targets[:2])
    model.eval()(images[:2])
    assert len(calls) == 2 and model.proposer.cache.hits == 4


def test_missing_ximgproc_says_what_to_install(monkeypatch, shapes):
    import cv2

    monkeypatch.delattr(cv2, "ximgproc")
    with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
        selective_search(shapes[0][0])


# ---------------------------------------------------------------- R-CNN


def test_regions_are_warped_with_context():
    """A white box on black, warped with p pixels of context: white inside the middle, black around."""
    image = torch.zeros(1, 3, 60, 80)
    image[:, :, 20:40, 10:50] = 1.0
    box = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    size, p = 32, 4
    wide = context_boxes(box, size, p)
    # the original box maps onto [p, size - p] of the warped region
    x1, y1, x2, y2 = wide[0].tolist()
    assert (10 - x1) / (x2 - x1) * size == pytest.approx(p) and (50 - x1) / (x2 - x1) * size == pytest.approx(size - p)
    assert (20 - y1) / (y2 - y1) * size == pytest.approx(p) and (40 - y1) / (y2 - y1) * size == pytest.approx(size - p)
    warper = WarpedRegionFeatures(torch.nn.Identity(), 3, size, p)
    region = warper.warp(image, torch.cat([torch.zeros(1, 1), wide], 1))[0, 0]
    assert region.shape == (size, size)
    assert (region[p + 1:size - p - 1, p + 1:size - p - 1] > 0.99).all()
    assert (region[:p - 1] < 0.01).all() and (region[:, :p - 1] < 0.01).all() and (region[size - p + 1:] < 0.01).all()


def test_rcnn_runs_the_cnn_once_per_region(shapes):
    images = shapes[0][:2]
    torch.manual_seed(0)
    model = archzoo.create_model("rcnn_alexnet", num_classes=3, **{**TINY_RCNN, "region_batch": 1}).eval()
    cnn = model.roi_heads.box_pool.cnn
    calls, proposals = [], []
    cnn.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    model.proposer.register_forward_hook(lambda m, inp, out: proposals.extend(len(p) for p in out[0]))
    with torch.no_grad():
        single = model(images)
    regions = sum(proposals)
    assert regions > 10 and calls == [1] * regions  # the literal loop: one forward per region
    calls.clear()
    model.roi_heads.box_pool.region_batch = 7
    with torch.no_grad():
        batched = model(images)
    assert sum(calls) == regions and len(calls) == math.ceil(regions / 7)  # the images' regions share batches
    for a, b in zip(single, batched):  # batching regions changes the speed, not the detections
        torch.testing.assert_close(a["boxes"], b["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(a["scores"], b["scores"], atol=1e-5, rtol=0)
    # the network proper: warped regions in, K + 1 class logits and 4 (K + 1) deltas out
    logits, deltas = model.forward_batch(torch.zeros(5, 3, 64, 64))
    assert logits.shape == (5, 4) and deltas.shape == (5, 16)


def test_rcnn_trains_on_a_quarter_positive_region_batch(shapes):
    """Fine-tuning's mini-batch: per image at most 32 regions, at most a quarter of them positives
    (IoU >= 0.5 with a box, the boxes themselves included), each region its own CNN input."""
    from torchvision.ops import box_iou

    images, targets = shapes[0][:2], shapes[1][:2]
    model = archzoo.create_model("rcnn_alexnet", num_classes=3, **TINY_RCNN).train()
    seen = []
    model.roi_heads.box_pool.cnn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg"} and all(torch.isfinite(v) for v in losses.values())
    expected = 0
    for image, t in zip(images, targets):
        regions = torch.cat([selective_search(image, max_boxes=40), t["boxes"]])
        positive = int((box_iou(t["boxes"], regions).max(0).values >= 0.5).sum())
        drawn = min(positive, 8)
        expected += drawn + min(len(regions) - positive, 32 - drawn)
    assert sum(seen) == expected <= 64
    labels = model.roi_heads.sample([selective_search(images[0], max_boxes=40)], targets[:1])[1][0]
    assert 1 <= int((labels > 0).sum()) <= 8 and len(labels) <= 32


# ---------------------------------------------------------------- Fast R-CNN


def test_fast_rcnn_runs_the_backbone_once_per_image(shapes):
    images = shapes[0][:3]
    model = archzoo.create_model("fast_rcnn_resnet50", num_classes=3, backbone="mobilenet_v2_035", image_size=64,
                                 proposals=50, representation_size=64).eval()
    calls = []
    model.backbone.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    with torch.no_grad():
        out = model(images)
    assert calls == [3] and len(out) == 3  # one batched forward for three images and their ~150 proposals
    assert model.backbone.feature_info.strides() == [16]
    assert model.roi_heads.box_pool.kind == "pool" and model.roi_heads.box_pool.output_size == 7


# ---------------------------------------------------------------- the commands, end to end


def test_train_eval_predict_end_to_end(tmp_path, capsys):
    """``archzoo train`` on a few shapes written as Pascal VOC (``--data shapes-det`` trains the same
    way but first generates its 4,000 images), then ``eval`` on its held-out part and ``predict``."""
    voc = write_shapes(tmp_path / "voc", "voc", n=8, size=64)
    run = tmp_path / "run"
    kwargs = [f"{k}={json.dumps(v)}" for k, v in TINY_RCNN.items() if k != "image_size"]
    rc, out, err = run_cli(["train", "rcnn_alexnet", "--data", voc, "--val-split", "0.25", "--image-size", "64",
                            "--epochs", "1", "-b", "3", "--opt", "adamw", "--lr", "1e-3", "--model-kwargs", *kwargs,
                            "--out", run, "--log-json"], capsys)
    assert rc == 0, err
    end = json.loads(out.strip().splitlines()[-1])
    assert end["event"] == "end" and end["model"] == "rcnn_alexnet" and 0 <= end["val_map50"] <= 1
    rc, out, err = run_cli(["eval", run / "best.safetensors", "--data", voc, "--held-out", "0.25", "--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert 0 <= result["map50"] <= 1 and result["count"] == end["val_count"]
    rc, out, err = run_cli(["predict", run / "best.safetensors", voc / "000.png", "--score-threshold", "0.0", "--json"],
                           capsys)
    assert rc == 0, err
    (found,) = json.loads(out)["predictions"]
    assert found["file"].endswith("000.png") and found["detections"]
    for det in found["detections"]:
        assert 0 <= det["box"][0] < det["box"][2] <= 64 and 0 <= det["box"][1] < det["box"][3] <= 64


# ---------------------------------------------------------------- bad input


def test_bad_input_is_refused_clearly(shapes):
    image = shapes[0][0]
    with pytest.raises(ValueError, match="mode must be one of"):
        selective_search(image, mode="slow")
    with pytest.raises(ValueError, match="max_boxes must be an integer >= 1"):
        selective_search(image, max_boxes=0)
    with pytest.raises(ValueError, match="max_side must be an integer >= 16"):
        selective_search(image, max_side=8)
    with pytest.raises(ValueError, match=r"image: expected a \[3, H, W\]"):
        selective_search(torch.rand(4, 32, 32))
    with pytest.raises(ValueError, match="image: expected a float tensor in 0..1 or uint8"):
        selective_search(torch.zeros(3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="image: has non-finite values"):
        selective_search(torch.full((3, 32, 32), float("nan")))
    with pytest.raises(ValueError, match="uint8 RGB array"):
        selective_search(np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="selective search needs 1 or 3 image channels"):
        SelectiveSearchProposer([0.5] * 4, [0.25] * 4)
    with pytest.raises(ValueError, match="context_padding must be >= 0 and leave room"):
        archzoo.create_model("rcnn_alexnet", warp_size=64, context_padding=32)
    with pytest.raises(ValueError, match="region_batch must be >= 1"):
        archzoo.create_model("rcnn_alexnet", region_batch=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        archzoo.create_model("fast_rcnn_resnet50", num_classes=0, backbone="mobilenet_v2_035")
    model = archzoo.create_model("rcnn_alexnet", num_classes=3, **TINY_RCNN).train()
    with pytest.raises(ValueError, match="needs targets"):
        model([image])
    with pytest.raises(ValueError, match=r"targets\[0\]: box 0 .* has no area"):
        model([image], [{"boxes": torch.tensor([[5.0, 5.0, 5.0, 9.0]]), "labels": torch.tensor([0])}])
    with pytest.raises(ValueError, match=r"targets\[0\]: labels must be int64 in 0..2"):
        model([image], [{"boxes": torch.tensor([[5.0, 5.0, 9.0, 9.0]]), "labels": torch.tensor([3])}])
    batch = ImageBatch(torch.zeros(1, 3, 32, 32), [(32, 32)])
    boxes, losses = SelectiveSearchProposer([0.5] * 3, [0.25] * 3)(batch, {})
    assert losses == {} and boxes[0].shape == (1, 4)  # a flat image: the whole image is the one proposal
