"""Datasets with boxes and masks: the one (image, target) interface, the built-in ``shapes-det`` and
``shapes-seg`` sets, and targets that survive splits, subsets, caches, flips and crops (per-sample
torchvision v2 transforms and the on-device batch augmentation)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archzoo.data import IGNORE_INDEX, ImageDataset, load_dataset, shapes, split_dataset
from archzoo.data.gpu import BatchAugment
from archzoo.data.shapes import load_shapes_dataset, semantic_masks
from archzoo.data.transforms import DenseTransform

N = 192  # images of the small sets built here (the first N of the built-in sets)


@pytest.fixture(scope="module")
def instances():
    """The multi-object images behind shapes-det / shapes-seg, with their instance masks."""
    return shapes.generate(N, objects=shapes.DENSE_OBJECTS, stream="train")


@pytest.fixture(scope="module")
def det():
    return load_shapes_dataset("train", task="detection", n=N)


@pytest.fixture(scope="module")
def seg():
    return load_shapes_dataset("train", task="segmentation", n=N)


def _tight_box(mask: torch.Tensor) -> list[float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return [cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1]


# ---------------------------------------------------------------- the interface


def test_every_task_yields_image_and_dict_target(det, seg, instances):
    cls = load_dataset("digits", val_split=0.0).train
    image, target = cls[3]
    assert image.dtype == torch.uint8 and set(target) == {"label"} and target["label"].dtype == torch.int64
    assert int(target["label"]) == int(cls.labels[3])

    image, target = det[0]
    k = int((instances.labels[0] >= 0).sum())
    assert det.task == "detection" and det.class_names == list(shapes.CLASS_NAMES)
    assert image.shape == (3, 32, 32) and torch.equal(image, instances.images[0])
    assert target["boxes"].shape == (k, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].dtype == torch.int64 and (target["labels"] >= 0).all()  # the padding is gone

    image, target = seg[0]
    assert seg.task == "segmentation" and seg.class_names == ["background", *shapes.CLASS_NAMES]
    assert torch.equal(image, det[0][0])  # the two sets share their images
    assert target["mask"].shape == (32, 32) and target["mask"].dtype == torch.int64


def test_shapes_det_and_seg_agree_with_the_instances(det, seg, instances):
    """Boxes are the tight boxes of the instance masks; the class mask is 1 + label on each object."""
    for i in range(0, N, 7):
        keep = instances.labels[i] >= 0
        boxes, labels = det[i][1]["boxes"], det[i][1]["labels"]
        assert torch.equal(labels, instances.labels[i][keep])
        for box, m in zip(boxes, instances.masks[i][keep]):
            assert box.tolist() == _tight_box(m)
        mask = seg[i][1]["mask"]
        expect = torch.zeros(32, 32, dtype=torch.int64)
        for lab, m in zip(labels, instances.masks[i][keep]):
            expect[m] = lab + 1
        assert torch.equal(mask, expect)
    assert torch.equal(semantic_masks(instances), seg.targets["mask"])
    counts = seg.class_counts()
    assert counts[0] > counts[1:].sum() > 0 and (counts[1:] > 0).all()  # background dominates; every shape occurs


def test_load_dataset_names_and_sizes():
    splits = load_dataset("shapes-det", val_split=0.2, seed=1)
    assert len(splits.train) + len(splits.val) == shapes.DENSE_SIZES["train"] and len(splits.val) == 800
    assert splits.train.task == "detection" and splits.class_names == list(shapes.CLASS_NAMES)
    test = load_dataset("shapes-seg", subset="test", val_split=0.0).train
    assert len(test) == shapes.DENSE_SIZES["test"] and test.task == "segmentation"
    assert not torch.equal(test.images[:50], splits.train.images[:50])


def test_dataset_checks_its_targets():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="needs targets 'mask'"):
        ImageDataset(["bg", "a"], images=images, task="segmentation", targets={})
    with pytest.raises(ValueError, match="mask values must lie in"):
        ImageDataset(["bg", "a"], images=images, task="segmentation", targets={"mask": torch.full((2, 8, 8), 7, dtype=torch.uint8)})
    ok = torch.full((2, 8, 8), IGNORE_INDEX, dtype=torch.uint8)  # ignored pixels are no class
    assert len(ImageDataset(["bg", "a"], images=images, task="segmentation", targets={"mask": ok})) == 2
    with pytest.raises(ValueError, match="do not match labels"):
        ImageDataset(["a"], images=images, task="detection", targets={"boxes": torch.zeros(2, 3, 4), "labels": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="2 images but 3 rows"):
        ImageDataset(["a"], images=images, task="detection", targets={"boxes": torch.zeros(3, 1, 4), "labels": torch.zeros(3, 1)})
    with pytest.raises(ValueError, match="needs labels"):
        ImageDataset(["a"], images=images)


# ---------------------------------------------------------------- splits, subsets, caches, class maps


@pytest.mark.parametrize("task", ["classification", "detection", "segmentation"])
def test_targets_survive_splits_and_subsets(task, det, seg):
    full = {"detection": det, "segmentation": seg}.get(task) or load_shapes_dataset("train", n=N)
    tr, va = split_dataset(full, 0.25, seed=3)
    assert len(tr) + len(va) == N and abs(len(va) - N // 4) <= 4  # per class (classification) or overall
    # which source item each split item is: its image says so (every image differs)
    flat = full.images.flatten(1)
    for part in (tr, va):
        for j in range(0, len(part), 11):
            i = int(torch.nonzero((flat == part.images[j].flatten()).all(1)).flatten()[0])
            a, b = part[j][1], full[i][1]
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (task, j, i)
    sub = va.subset([2, 0])
    assert all(torch.equal(sub[0][1][k], va[2][1][k]) for k in sub[0][1])
    if task == "classification":  # the one-object set keeps its object's box and mask as well
        assert {"box", "object_mask"} <= set(va[0][1]) and va[0][1]["box"].tolist() == _tight_box(va[0][1]["object_mask"])


def test_cache_hands_out_independent_copies():
    a = load_shapes_dataset("test", task="segmentation", n=64)
    b = load_shapes_dataset("test", task="segmentation", n=64)
    assert torch.equal(a.targets["mask"], b.targets["mask"])
    a.targets["mask"].zero_()
    a.images.zero_()
    c = load_shapes_dataset("test", task="segmentation", n=64)
    assert torch.equal(c.targets["mask"], b.targets["mask"]) and c.images.any()


def test_remap_classes_moves_labels_masks_and_box_labels(det, seg):
    order = list(reversed(seg.class_names))
    lut = torch.tensor([order.index(n) for n in seg.class_names])
    r = seg.remap_classes(order, lut)
    m, rm = seg[5][1]["mask"], r[5][1]["mask"]
    assert torch.equal(rm, lut[m]) and r.class_names == order
    d = det.remap_classes(list(reversed(det.class_names)), torch.arange(8).flip(0))
    assert torch.equal(d[5][1]["labels"], 7 - det[5][1]["labels"]) and torch.equal(d[5][1]["boxes"], det[5][1]["boxes"])


# ---------------------------------------------------------------- flips and crops move the targets


def _check_boxes_follow_masks(image_size, boxes, labels, masks, semantic, tol):
    """Each box encloses its instance mask and, unless a crop cut the object, is its tight box,
    within ``tol`` px; every object pixel of the class mask lies in a box of its class (within
    1 px: an object a crop cuts to less than a pixel loses its box)."""
    s = image_size
    assert len(boxes) == len(labels) == len(masks)
    for box, m in zip(boxes, masks):
        if not m.any():  # a crop can leave a box corner without object pixels
            continue
        tight = torch.tensor(_tight_box(m), dtype=torch.float32)
        assert (box[:2] <= tight[:2] + tol).all() and (box[2:] >= tight[2:] - tol).all(), (box, tight)
        if tight[0] > 0 and tight[1] > 0 and tight[2] < s and tight[3] < s:  # not cut
            assert (box - tight).abs().max() <= tol, (box, tight)
    rows, cols = torch.nonzero((semantic > 0) & (semantic != IGNORE_INDEX), as_tuple=True)
    for r, c in zip(rows.tolist(), cols.tolist()):
        lab = int(semantic[r, c]) - 1
        inside = (labels == lab) & (boxes[:, 0] - 1 <= c) & (c < boxes[:, 2] + 1) & (boxes[:, 1] - 1 <= r) & (r < boxes[:, 3] + 1)
        assert inside.any() or min(r, c, s - 1 - r, s - 1 - c) == 0, (r, c, lab)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, N - 1), seed=st.integers(0, 2**31 - 1), size=st.sampled_from([32, 48]),
       pad=st.integers(0, 8), small=st.booleans())
def test_random_flips_and_crops_keep_boxes_on_their_masks(instances, index, seed, size, pad, small):
    """Flips and pad-crops of the 32-px images move boxes and masks exactly; where the image is
    also resized (a larger input, random-resized crops) nearest sampling of the mask leaves the
    boxes within 1 px of it. (Shrinking can skip a thin tip: up to a source pixel more.)"""
    keep = instances.labels[index] >= 0
    target = {"boxes": instances.boxes[index][keep], "labels": instances.labels[index][keep],
              "masks": instances.masks[index][keep], "mask": semantic_masks(instances)[index].long()}
    tf = DenseTransform(True, size, (0.5,) * 3, (0.5,) * 3, pad=pad, small=small, scale=(0.25, 1.0), boxes=True)
    torch.manual_seed(seed)
    x, out = tf(instances.images[index], target)
    assert x.shape == (3, size, size) and out["mask"].shape == (size, size) and out["masks"].shape[1:] == (size, size)
    exact = small and size == 32
    _check_boxes_follow_masks(size, out["boxes"], out["labels"], out["masks"], out["mask"], tol=0 if exact else 1)
    if exact:  # the class mask and the instance masks moved the same way
        union = torch.zeros(size, size, dtype=torch.int64)
        for lab, m in zip(out["labels"], out["masks"]):
            union[m] = lab + 1
        objects = (out["mask"] > 0) & (out["mask"] != IGNORE_INDEX)
        assert torch.equal(union[objects], out["mask"][objects])


def test_a_crop_drops_the_boxes_it_leaves_out(instances):
    keep = instances.labels[0] >= 0
    boxes = instances.boxes[0][keep]
    target = {"boxes": boxes, "labels": instances.labels[0][keep], "masks": instances.masks[0][keep]}
    # eval resize to 64: every box scales by 2 exactly
    _, out = DenseTransform(False, 64, (0.5,) * 3, (0.5,) * 3, boxes=True)(instances.images[0], target)
    assert torch.equal(out["boxes"], boxes * 2)
    # a centre crop larger than the image pads it: every box moves by the padding
    from torchvision.transforms import v2

    tf = DenseTransform(False, 32, (0.5,) * 3, (0.5,) * 3, boxes=True)
    tf.geometric = v2.Compose([v2.CenterCrop(48), v2.SanitizeBoundingBoxes()])
    _, out = tf(instances.images[0], target)
    assert torch.equal(out["boxes"], boxes + 8)
    # the centre 16x16: boxes reaching into it survive, cut to it; the rest go with their labels and masks
    tf.geometric = v2.Compose([v2.CenterCrop(16), v2.SanitizeBoundingBoxes()])
    _, out = tf(instances.images[0], target)
    inside = (boxes[:, 0] < 24) & (boxes[:, 2] > 8) & (boxes[:, 1] < 24) & (boxes[:, 3] > 8)
    assert 0 < int(inside.sum()) < len(boxes), "pick an image with boxes in and out of the centre"
    assert len(out["boxes"]) == len(out["labels"]) == len(out["masks"]) == int(inside.sum())
    assert torch.equal(out["labels"], target["labels"][inside])
    assert torch.equal(out["boxes"], (boxes[inside] - 8).clamp(0, 16))
    assert torch.equal(out["masks"], target["masks"][inside][:, 8:24, 8:24])


@pytest.mark.parametrize("scale", [None, (0.3, 1.0)])
def test_batch_augment_moves_masks_with_images(seg, scale):
    """Images whose pixels spell their mask: after the on-device crop and flip they still do."""
    masks = seg.targets["mask"][:64]
    images = (masks * 20)[:, None].expand(-1, 3, -1, -1).contiguous()
    aug = BatchAugment(32, (0.0,) * 3, (1 / 255,) * 3, pad=4, scale=scale, generator=torch.Generator().manual_seed(0))
    x, m = aug(images, masks)
    assert x.shape == (64, 3, 32, 32) and m.shape == (64, 32, 32) and m.dtype == torch.uint8
    assert not torch.equal(m, masks)  # something moved
    pixels = x[:, 0]
    if scale is None:  # a gather: exact, the padding ignored in the mask and black in the image
        pad = m == IGNORE_INDEX
        assert pad.any() and (pixels[pad] == 0).all() and torch.equal(pixels[~pad], m[~pad].float() * 20)
    else:  # bilinear image, nearest mask: on object pixels they mostly agree (misaligned, they would not)
        agree = lambda mask: float(((pixels - mask.float() * 20).abs() < 10)[mask > 0].float().mean())
        assert agree(m) > 0.7 and agree(m.flip(-1)) < 0.3
    # eval: resize only, masks nearest
    aug.eval()
    x, m = aug(images, masks)
    assert torch.equal(m, masks) and torch.equal(x[:, 0], masks.float() * 20)
