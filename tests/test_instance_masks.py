"""Instance masks for detectors that predict them (Mask R-CNN): the data carries one mask per box
(``shapes-det``, COCO polygons and RLE) only when asked, the transforms move masks with the
pixels, the meter's mask AP is pycocotools' ``segm`` AP, and ``predict`` lists and draws masks.

The detector here is a stand-in: a module with a detector card that says ``instance_masks`` and
returns fixed detections with masks, so none of this waits for a real Mask R-CNN."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import nn

from archzoo.data import ImageDataset, load_dataset
from archzoo.data.annotations import AnnotationError
from archzoo.data.transforms import DenseTransform
from archzoo.engine.detection import (
    DetectionTask,
    draw_detections,
    has_masks,
    wants_masks,
)
from archzoo.engine.metrics import DetectionMeter, mask_rles

pytestmark = pytest.mark.filterwarnings("ignore")


def _tight_box(mask: torch.Tensor) -> list[float]:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


# ---------------------------------------------------------------- a stand-in Mask R-CNN


def _card(**changes):
    from archzoo.registry import model_card

    return dataclasses.replace(model_card("yolov8n"), name="fake_mask_detector", instance_masks=True,
                               min_input_size=(3, 16, 16), **changes)


class _MaskDetector(nn.Module):
    """The same detections with masks (input pixels, ``[n, 1, H, W]`` probabilities) for every
    image; in training one loss, and the targets it was given are kept in ``seen``."""

    def __init__(self, boxes, scores, labels, masks, num_classes: int = 2):
        super().__init__()
        self.card = _card()
        self.num_classes = num_classes
        self.build_args = {"in_chans": 3}
        self.w = nn.Parameter(torch.zeros(()))
        self.out = {"boxes": torch.as_tensor(boxes, dtype=torch.float32), "scores": torch.as_tensor(scores),
                    "labels": torch.as_tensor(labels), "masks": torch.as_tensor(masks, dtype=torch.float32)}
        self.seen: list = []

    def forward(self, images, targets=None):
        if self.training:
            self.seen.append(targets)
            return {"loss": (self.w - 1) ** 2}
        return [dict(self.out) for _ in range(len(images))]


def test_which_models_want_masks():
    assert not wants_masks("yolov8n") and not wants_masks("no_such_model")
    fake = _MaskDetector(torch.zeros(0, 4), [], [], torch.zeros(0, 1, 8, 8))
    assert wants_masks(fake) and not wants_masks(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="instance_masks is for detectors"):
        dataclasses.replace(_card(), task="segmentation")


# ---------------------------------------------------------------- shapes-det and the transforms


def test_shapes_det_carries_masks_only_when_asked():
    from archzoo.data.shapes import load_shapes_dataset

    plain = load_shapes_dataset("test", size=32, task="detection", n=12)
    ds = load_shapes_dataset("test", size=32, task="detection", n=12, masks=True)
    assert "masks" not in plain.targets and not has_masks(plain) and has_masks(ds)
    for part in (ds, ds.subset([3, 7, 11])):  # subsets (splits) keep them, row for row
        for i in range(len(part)):
            _, t = part[i]
            assert t["masks"].shape == (len(t["boxes"]), 32, 32) and t["masks"].dtype == torch.bool
            assert [_tight_box(m) for m in t["masks"]] == t["boxes"].tolist()  # shapes' boxes frame their masks


def _two_ells(scale: int = 1):
    """A 48 x 48 (x ``scale``) picture of two L-shaped objects, one red, one green, with their
    masks and tight boxes: a flip or a crop that moves the pixels must move the masks the same."""
    masks = torch.zeros(2, 48, 48, dtype=torch.bool)
    masks[0, 6:20, 4:10] = True
    masks[0, 14:20, 4:18] = True
    masks[1, 26:44, 28:34] = True
    masks[1, 26:32, 20:34] = True
    masks = masks.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    image = torch.full((3, 48 * scale, 48 * scale), 30, dtype=torch.uint8)
    for m, colour in zip(masks, ((220, 30, 30), (30, 220, 30))):
        image[:, m] = torch.tensor(colour, dtype=torch.uint8)[:, None]
    target = {"boxes": torch.tensor([_tight_box(m) for m in masks]), "labels": torch.tensor([0, 1]), "masks": masks}
    return image, target


def _colour_regions(x: torch.Tensor) -> torch.Tensor:
    """Where the (0..1) picture is red, and where it is green: ``[2, H, W]``."""
    return torch.stack([(x[0] > 0.5) & (x[1] < 0.5), (x[1] > 0.5) & (x[0] < 0.5)])


def test_flips_and_pad_crops_move_masks_with_the_pixels():
    image, target = _two_ells()
    tf = DenseTransform(True, 48, (0.0,) * 3, (1.0,) * 3, boxes=True, pad=8)
    flipped = shifted = 0
    for seed in range(12):
        torch.manual_seed(seed)
        x, t = tf(image, target)
        assert t["masks"].dtype == torch.bool and t["masks"].shape == (2, 48, 48)
        assert torch.equal(t["masks"], _colour_regions(x))  # exact: no interpolation on this path
        assert [_tight_box(m) for m in t["masks"]] == t["boxes"].tolist()  # boxes and masks agree
        flipped += bool(t["masks"][0, :, 32:].any())  # the left L (cols 4..17, moved up to 8 px) went right
        shifted += not torch.equal(t["masks"], target["masks"])
    assert flipped and shifted  # the draws did flip and move the objects
    torch.manual_seed(0)
    tf = DenseTransform(True, 48, (0.0,) * 3, (1.0,) * 3, boxes=True, pad=0)
    for _ in range(6):  # flips alone: the mask is the mirror image, or itself
        x, t = tf(image, target)
        assert torch.equal(t["masks"], target["masks"]) or torch.equal(t["masks"], target["masks"].flip(-1))
        if torch.equal(t["masks"], target["masks"].flip(-1)):
            assert t["boxes"][0].tolist() == [48 - target["boxes"][0, 2].item(), 6.0, 48 - target["boxes"][0, 0].item(), 20.0]


def test_a_crop_crops_the_masks_and_drops_the_objects_it_cuts_away():
    image, target = _two_ells()
    tf = DenseTransform(True, 48, (0.0,) * 3, (1.0,) * 3, boxes=True, pad=0, flip=False, crop=24)
    counts = set()
    for seed in range(16):
        torch.manual_seed(seed)
        x, t = tf(image, target)
        assert x.shape == (3, 24, 24) and t["masks"].shape == (len(t["boxes"]), 24, 24)
        regions = _colour_regions(x)
        kept = [int(c) for c in t["labels"]]
        for m, box, c in zip(t["masks"], t["boxes"], kept):
            assert torch.equal(m, regions[c])  # the mask is the object's visible part
            if m.any():  # and lies within its box (the visible part of the original box)
                x1, y1, x2, y2 = _tight_box(m)
                assert box[0] <= x1 and box[1] <= y1 and x2 <= box[2] and y2 <= box[3]
        for c in set(range(2)) - set(kept):  # a dropped object is out of sight
            assert not regions[c].any()
        counts.add(len(kept))
    assert len(counts) > 1  # some crops cut an object away


def test_eval_resize_scales_masks_with_the_boxes():
    image, target = _two_ells(scale=2)
    _, t = DenseTransform(False, 48, (0.0,) * 3, (1.0,) * 3, boxes=True)(image, target)
    small = _two_ells()[1]
    assert torch.equal(t["masks"], small["masks"]) and torch.equal(t["boxes"], small["boxes"])


def test_batches_give_the_detector_masks_when_the_data_has_them():
    from archzoo.engine.config import TrainConfig

    image, target = _two_ells()
    task = DetectionTask(2, ["red", "green"])
    tf = task.sample_transform(True, TrainConfig(), 48, (0.0,) * 3, (1.0,) * 3, 3)
    seen = []
    for with_masks in (True, False):
        t = target if with_masks else {k: v for k, v in target.items() if k != "masks"}
        x, targets = task.collate([tf(image, t), tf(image, t)])
        task.forward(lambda images, ts: seen.append(ts), x, targets)
        want = {"boxes", "labels", "masks"} if with_masks else {"boxes", "labels"}
        assert all(set(s) == want for s in seen[-1])
        assert not with_masks or all(s["masks"].shape == (2, 48, 48) for s in seen[-1])


# ---------------------------------------------------------------- COCO polygons and RLE


def _coco_root(tmp_path: Path, annotations: list[dict], size=(40, 30), n_images: int = 2) -> Path:
    root = tmp_path / "coco"
    root.mkdir()
    w, h = size
    images = []
    for i in range(n_images):
        a = np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(root / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": w, "height": h})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (root / "_annotations.coco.json").write_text(json.dumps(coco))
    return root


def _ann(aid, image_id, seg, box=(2, 3, 10, 6), cat=1, crowd=0) -> dict:
    return {"id": aid, "image_id": image_id, "category_id": cat, "bbox": list(box), "iscrowd": crowd,
            "segmentation": seg}


def _blob(h=30, w=40) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[10:25, 20:30] = 1
    m[12:15, 31:38] = 1  # two parts: one object, one RLE
    return m


def _uncompressed(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a 0 run."""
    flat, counts, value, run = m.flatten(order="F"), [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(m.shape), "counts": counts}


def _masks_set(tmp_path):
    blob = _blob()
    compressed = mask_utils.encode(np.asfortranarray(blob))
    anns = [_ann(1, 10, [[2, 3, 12, 3, 12, 9, 2, 9]]),  # a rectangle polygon
            _ann(2, 10, _uncompressed(blob), box=(20, 10, 18, 15), cat=2),
            _ann(3, 11, {"size": [30, 40], "counts": compressed["counts"].decode()}, box=(20, 10, 18, 15)),
            _ann(4, 11, [[0, 0, 8, 0, 8, 4, 0, 4], [30, 20, 36, 20, 36, 28]], box=(0, 0, 36, 28), crowd=1)]
    return _coco_root(tmp_path, anns), blob


def test_coco_polygons_and_rle_decode_to_their_masks(tmp_path):
    root, blob = _masks_set(tmp_path)
    plain = load_dataset(str(root), val_split=0.0).train
    assert not has_masks(plain) and "masks" not in plain[0][1]
    splits = load_dataset(str(root), val_split=0.0, masks=True)
    ds = splits.train
    assert "instance masks" in splits.description and has_masks(ds)
    rect = np.zeros((30, 40), np.uint8)
    rect[3:9, 2:12] = 1  # pycocotools' polygon of whole-pixel corners covers exactly those pixels
    image, t = ds[0]
    assert image.shape == (3, 30, 40) and t["masks"].dtype == torch.uint8
    assert np.array_equal(t["masks"].numpy(), np.stack([rect, blob]))  # polygon, uncompressed RLE
    t = ds.target(1)
    crowd = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[0, 0, 8, 0, 8, 4, 0, 4],
                                                                      [30, 20, 36, 20, 36, 28]], 30, 40)))
    assert np.array_equal(t["masks"][0].numpy(), blob) and np.array_equal(t["masks"][1].numpy(), crowd)
    assert t["difficult"].tolist() == [False, True] and crowd[:4, :8].all() and crowd.sum() > 32
    held = load_dataset(str(root), val_split=0.5, seed=0, masks=True)  # the split halves keep their masks
    for part in (held.train, held.val, ds.remap_classes(["b", "a"], torch.tensor([1, 0]))):
        for i in range(len(part)):
            _, t = part[i]
            assert t["masks"].shape == (len(t["boxes"]), 30, 40)
            assert sorted(int(m.sum()) for m in t["masks"]) in ([60, int(blob.sum())], sorted([int(blob.sum()), int(crowd.sum())]))


def test_a_box_only_coco_file_is_read_without_masks(tmp_path):
    root = _coco_root(tmp_path, [_ann(1, 10, []), {**_ann(2, 11, None), "segmentation": None}])
    splits = load_dataset(str(root), val_split=0.0, masks=True)
    assert not has_masks(splits.train) and "no instance masks" in splits.description


@pytest.mark.parametrize("seg, needle", [
    ([], "annotation id 2: has no segmentation"),
    ({"size": [20, 40], "counts": [800]}, "annotation id 2: RLE size [20, 40] (height, width) is not the image's [30, 40]"),
    ({"size": [30, 40], "counts": "P13"}, "annotation id 2: RLE counts do not decode"),
    ({"size": [30, 40], "counts": [1200]}, "annotation id 2: segmentation covers no pixel"),
    ([[5, 5, 9, 5, 13, 5]], "annotation id 2: segmentation covers no pixel"),  # three points on a line
    ([[5, 5, 60, 5, 60, 9]], "annotation id 2: polygon reaches (5..60, 5..9), outside the 40x30 image"),
    ([[5, 5, 9, 5]], "annotation id 2: segmentation[0] must be a polygon"),
])
def test_bad_outlines_are_named_or_skipped(tmp_path, seg, needle):
    good = _ann(1, 10, [[2, 3, 12, 3, 12, 9, 2, 9]])
    root = _coco_root(tmp_path, [good, _ann(2, 11, seg)])
    with pytest.raises(AnnotationError) as e:
        load_dataset(str(root), val_split=0.0, masks=True)
    assert "_annotations.coco.json" in str(e.value) and needle in str(e.value), str(e.value)
    splits = load_dataset(str(root), val_split=0.0, masks=True, skip_bad=True)
    assert len(splits.train) == 1 and len(splits.bad_files) == 1 and needle in splits.bad_files[0][1]
    if seg != []:  # a box detector does not read outlines
        assert len(load_dataset(str(root), val_split=0.0).train) == 2


# ---------------------------------------------------------------- mask AP


def _random_mask_results(n: int = 8, k: int = 2, seed: int = 0):
    """Seeded rectangles-and-discs ground truth (some crowd) and detections whose masks are the
    truth shifted by a few pixels, with noisy scores and a few false alarms."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    preds, targets = [], []
    for i in range(n):
        m = int(torch.randint(1, 4, (), generator=g))
        cx, cy = torch.randint(12, 52, (2, m), generator=g)
        r = torch.randint(5, 12, (m,), generator=g)
        disc = torch.rand(m, generator=g) < 0.5
        masks = torch.stack([((xx - x) ** 2 + (yy - y) ** 2 <= rr**2) if d else
                             ((xx - x).abs() <= rr) & ((yy - y).abs() <= rr // 2)
                             for x, y, rr, d in zip(cx, cy, r, disc)])
        boxes = torch.tensor([_tight_box(mm) for mm in masks])
        labels = torch.randint(0, k, (m,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "masks": masks,
                        "difficult": torch.rand(m, generator=g) < 0.15})
        shift = torch.randint(-4, 5, (m, 2), generator=g)
        moved = torch.stack([mm.roll((int(dy), int(dx)), (0, 1)) for mm, (dx, dy) in zip(masks, shift)])
        noise = torch.zeros(2, 64, 64)
        noise[:, 2:8, 2:8] = 0.9
        probs = torch.cat([moved.float() * 0.9, noise])[:, None]  # [n, 1, H, W] probabilities
        preds.append({"boxes": torch.cat([boxes, torch.tensor([[2.0, 2, 8, 8]] * 2)]),
                      "scores": torch.rand(m + 2, generator=g), "labels": torch.cat([labels, torch.tensor([0, 1])]),
                      "masks": probs})
    return preds, targets


def _segm_directly(preds, targets, k):
    """COCOeval ``segm`` as its documentation runs it: ground truth as a COCO object, results by loadRes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        r = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
        r["counts"] = r["counts"].decode()
        return r

    images = [{"id": 100 + i, "width": 64, "height": 64} for i in range(len(targets))]
    anns = [{"id": len(images) * 10 + j * 1000 + i, "image_id": 100 + i, "category_id": 10 + int(c), "iscrowd": int(d),
             "segmentation": rle(m), "area": float(m.sum()), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for i, t in enumerate(targets)
            for j, (m, c, d, b) in enumerate(zip(t["masks"], t["labels"], t["difficult"], t["boxes"].tolist()))]
    dets = [{"image_id": 100 + i, "category_id": 10 + int(c), "score": float(s), "segmentation": rle(m[0] > 0.5)}
            for i, p in enumerate(preds) for m, s, c in zip(p["masks"], p["scores"], p["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 10 + c} for c in range(k)]}
        gt.createIndex()
        e = COCOeval(gt, gt.loadRes(dets), "segm")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def test_mask_ap_equals_pycocotools_segm_run_directly():
    preds, targets = _random_mask_results()
    m = DetectionMeter(2, ["a", "b"])
    m.update(preds[:5], targets[:5], None)  # several batches
    m.update(preds[5:], targets[5:], None)
    r = m.compute()
    e = _segm_directly(preds, targets, 2)
    assert r["mask_map"] == pytest.approx(e.stats[0], abs=1e-12)
    assert r["mask_map50"] == pytest.approx(e.stats[1], abs=1e-12)
    assert r["mask_map75"] == pytest.approx(e.stats[2], abs=1e-12)
    assert 0 < r["mask_map"] < r["mask_map50"] < 1 and r["mask_map"] != r["map"]
    precision = e.eval["precision"][:, :, :, 0, -1]
    for c, name in enumerate("ab"):
        p = precision[:, :, c]
        assert r["per_class"][name]["mask_map"] == pytest.approx(p[p > -1].mean(), abs=1e-12)
    boxes_only = DetectionMeter(2, ["a", "b"])  # without masks on both sides: box AP alone, the same
    boxes_only.update([{k: v for k, v in p.items() if k != "masks"} for p in preds], targets, None)
    plain = boxes_only.compute()
    assert "mask_map" not in plain and plain["map"] == r["map"]


def test_perfect_masks_score_one_and_shifted_ones_less():
    _, targets = _random_mask_results(6, seed=1)
    exact = [{"boxes": t["boxes"], "scores": torch.linspace(0.9, 0.5, len(t["boxes"])), "labels": t["labels"],
              "masks": t["masks"][:, None].float()} for t in targets]
    scores = {}
    for shift in (0, 3, 6):
        m = DetectionMeter(2)
        m.update([{**p, "masks": p["masks"].roll(shift, -1)} for p in exact], targets, None)
        r = m.compute()
        assert r["map"] == pytest.approx(1.0)  # the boxes are exact throughout
        scores[shift] = r["mask_map"]
    assert scores[0] == pytest.approx(1.0) and 1.0 > scores[3] > scores[6]


def test_mask_rles_round_trip_and_refuse_non_masks():
    m = torch.zeros(3, 9, 7, dtype=torch.bool)
    m[0, 2:5, 1:3] = True
    m[2] = True
    rles = mask_rles(m)
    assert [r["area"] for r in rles] == [6, 0, 63] and all(r["size"] == [9, 7] for r in rles)
    back = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    assert np.array_equal(back.transpose(2, 0, 1), m.numpy())
    json.dumps(rles)
    with pytest.raises(ValueError, match="bool"):
        mask_rles(m.float())


def test_masks_of_other_pixels_than_the_truth_are_refused():
    _, targets = _random_mask_results(1)
    t = targets[0]
    p = {"boxes": t["boxes"], "scores": torch.ones(len(t["boxes"])), "labels": t["labels"],
         "masks": torch.ones(len(t["boxes"]), 1, 32, 32)}
    m = DetectionMeter(2)
    m.update([p], targets, None)
    with pytest.raises(ValueError, match="same pixels"):
        m.compute()


# ---------------------------------------------------------------- eval and predict with a stand-in detector


def _ell_dataset(n: int = 3) -> ImageDataset:
    image, target = _two_ells()
    return ImageDataset(["red", "green"], images=image[None].repeat(n, 1, 1, 1), task="detection",
                        targets={"boxes": target["boxes"][None].repeat(n, 1, 1), "labels": target["labels"][None].repeat(n, 1),
                                 "masks": target["masks"][None].repeat(n, 1, 1, 1)})


def test_evaluate_reports_mask_ap_beside_box_ap():
    from archzoo.engine.evaluate import evaluate_model

    _, target = _two_ells()
    ds = _ell_dataset()
    results = {}
    for shift in (0, 4):
        model = _MaskDetector(target["boxes"], [0.9, 0.8], [0, 1], target["masks"].roll(shift, -1)[:, None].float())
        m = evaluate_model(model, ds, input_size=48, mean=[0.0] * 3, std=[1.0] * 3, batch_size=2, device="cpu",
                           workers=0, class_names=["red", "green"])
        results[shift] = m
    assert results[0]["map"] == results[4]["map"] == pytest.approx(1.0) and results[0]["mask_map"] == pytest.approx(1.0)
    assert results[4]["mask_map"] < 0.5  # a 4-px shift of a 6-px-wide L overlaps it by far less than 0.5
    task = DetectionTask(2, ["red", "green"])
    out = task.eval_result(results[4])
    assert {"map", "map50", "map75", "mask_map", "mask_map50", "mask_map75", "per_class", "count"} == set(out)
    json.dumps(out)
    (_, _, rows), (_, columns, per_class) = task.eval_tables(results[4])
    assert [r[0] for r in rows][3:6] == ["mask mAP@[.5:.95]", "mask mAP@0.5", "mask mAP@0.75"]
    assert columns[-2:] == ["mask AP@[.5:.95]", "mask AP@0.5"] and len(per_class[0]) == 5


def test_training_gives_the_masks_and_refuses_data_without_them():
    import archzoo
    from archzoo.validate import UserError

    _, target = _two_ells()
    model = _MaskDetector(target["boxes"], [0.9, 0.8], [0, 1], target["masks"][:, None].float())
    archzoo.train(model, _ell_dataset(4), epochs=1, batch_size=2, val_split=0.0, log="quiet", workers=0, device="cpu")
    assert model.seen and all(t["masks"].shape == (2, 48, 48) and t["masks"].dtype == torch.bool
                              for batch in model.seen for t in batch)
    ds = _ell_dataset(4)
    boxes_only = ImageDataset(ds.class_names, images=ds.images, task="detection",
                              targets={k: v for k, v in ds.targets.items() if k != "masks"})
    with pytest.raises(UserError, match="predicts instance masks and trains on them, but the data has none"):
        archzoo.train(model, boxes_only, epochs=1, val_split=0.0, log="quiet", workers=0, device="cpu")


def test_predict_lists_masks_in_original_pixels_and_draws_them(tmp_path):
    from archzoo.cli.predict import predict_files

    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, 8:24, 8:24] = 1.0  # in the 32-px input: rows and cols 8..23
    masks[1, 0, 20:30, 2:6] = 0.4  # never above 0.5: an empty mask
    model = _MaskDetector([[8, 8, 24, 24], [2, 20, 6, 30]], [0.9, 0.6], [1, 0], masks).eval()
    task = DetectionTask(2, ["cat", "dog"])
    out = task.predict(model, torch.zeros(1, 3, 32, 32), (64, 64), topk=10, score_threshold=0.3)
    first, second = out["detections"]
    assert first["box"] == [16.0, 16.0, 48.0, 48.0] and set(first) == {"label", "index", "score", "box", "mask"}
    want = np.zeros((64, 64), np.uint8)
    want[16:48, 16:48] = 1  # twice the size: the box's pixels exactly (bilinear edges at 0.25 / 0.75)
    got = mask_utils.decode({"size": first["mask"]["size"], "counts": first["mask"]["counts"].encode()})
    assert first["mask"]["size"] == [64, 64] and np.array_equal(got, want) and first["mask"]["area"] == 32 * 32
    assert second["mask"]["area"] == 0
    json.dumps(out)

    picture = np.full((64, 64, 3), 40, np.uint8)
    Image.fromarray(picture).save(tmp_path / "img.png")
    meta = {"model": "fake", "input_size": [3, 32, 32], "class_names": ["cat", "dog"], "mean": [0.0] * 3, "std": [1.0] * 3}
    (entry,) = predict_files(model, meta, [str(tmp_path / "img.png")], device="cpu", out=tmp_path / "drawn")
    assert entry["detections"][0]["mask"]["area"] == 32 * 32
    drawn = np.asarray(Image.open(entry["picture"])).astype(int)
    inside, outside = drawn[40, 32], drawn[56, 56]  # in the mask, below the label; away from both boxes
    assert (inside != 40).any() and (outside == 40).all()
    plain = draw_detections(torch.from_numpy(picture).permute(2, 0, 1).contiguous(),
                            [{k: v for k, v in first.items() if k != "mask"}], ["cat", "dog"], tmp_path / "boxes.png")
    assert (np.asarray(Image.open(plain))[40, 32] == 40).all()  # the same box without its mask: not filled


# ---------------------------------------------------------------- with the real Mask R-CNN, once it is registered


def _has_mask_rcnn() -> bool:
    import archzoo

    return "maskrcnn_resnet50_fpn" in archzoo.list_models()


@pytest.mark.skipif(not _has_mask_rcnn(), reason="Mask R-CNN is not registered")
def test_mask_rcnn_trains_on_shapes_masks_and_eval_scores_its_masks():
    """The real detector (small, random) through the task: its card asks for masks, a batch of
    shapes-det read with masks gives it a mask loss, and evaluation scores its masks beside its boxes.
    (A whole ``archzoo.train`` epoch of it takes ~8 s of CPU here, too slow for this file.)"""
    import archzoo
    from archzoo.data.shapes import load_shapes_dataset
    from archzoo.engine.config import TrainConfig
    from archzoo.engine.evaluate import evaluate_model

    assert wants_masks("maskrcnn_resnet50_fpn") and not wants_masks("fasterrcnn_resnet50_fpn")
    torch.manual_seed(0)
    ds = load_shapes_dataset("test", size=64, task="detection", n=4, masks=True)
    model = archzoo.create_model("maskrcnn_resnet50_fpn", num_classes=8, backbone="mobilenet_v2_035", fpn_channels=64,
                                 mask_layers=(64, 64), image_size=64, representation_size=128,
                                 rpn_pre_nms_top_n=(300, 300), rpn_post_nms_top_n=(100, 100),
                                 box_batch_size_per_image=64, box_detections_per_img=20)
    task = DetectionTask(8, ds.class_names)
    tf = task.sample_transform(True, TrainConfig(), 64, (0.0,) * 3, (1.0,) * 3, 3)
    x, targets = task.collate([tf(*ds[i]) for i in range(len(ds))])
    losses = task.forward(model.train(), x, targets)
    assert "loss_mask" in losses and torch.isfinite(task.loss(losses, targets))
    m = evaluate_model(model, ds, input_size=64, mean=[0.0] * 3, std=[1.0] * 3, batch_size=4, device="cpu", workers=0)
    assert {"map", "mask_map", "mask_map50", "mask_map75"} <= set(m) and 0 <= m["mask_map"] <= 1
