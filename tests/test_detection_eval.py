"""Detection evaluation and prediction: DetectionMeter gives pycocotools' own numbers, ``archzoo
eval`` prints them, ``archzoo predict`` lists and draws boxes in the original image's pixels.

The end-to-end test trains a real zoo detector (YOLOv8-n at 32 px) through ``archzoo.train`` and
runs the commands on its checkpoint."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_robustness_helpers import run_cli
from torch import nn

from archzoo.engine.detection import DetectionTask, draw_detections
from archzoo.engine.metrics import DetectionMeter

pytestmark = pytest.mark.filterwarnings("ignore")


def _random_results(n: int = 12, k: int = 3, seed: int = 0):
    """Seeded targets (some difficult, one image empty) and noisy detections (one image without any)."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(n):
        m = 0 if i == 3 else int(torch.randint(1, 5, (), generator=g))
        xy = torch.rand(m, 2, generator=g) * 80
        boxes = torch.cat([xy, xy + 4 + torch.rand(m, 2, generator=g) * 40], 1)
        labels = torch.randint(0, k, (m,), generator=g)
        difficult = torch.rand(m, generator=g) < 0.15
        targets.append({"boxes": boxes, "labels": labels, "difficult": difficult})
        if i == 5:
            preds.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)})
            continue
        noisy = boxes + torch.randn(m, 4, generator=g) * 4
        extra = torch.rand(2, 2, generator=g) * 80
        preds.append({"boxes": torch.cat([noisy, torch.cat([extra, extra + 20], 1)]),
                      "scores": torch.rand(m + 2, generator=g),
                      "labels": torch.cat([labels, torch.randint(0, k, (2,), generator=g)])})
    return preds, targets


def _pycocotools_directly(preds, targets, k):
    """COCOeval as its documentation runs it: ground truth as a COCO object, detections by loadRes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images = [{"id": 100 + i, "width": 200, "height": 200} for i in range(len(targets))]
    anns = []
    for i, t in enumerate(targets):
        for b, c, d in zip(t["boxes"].tolist(), t["labels"].tolist(), t["difficult"].tolist()):
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": 10 + c, "iscrowd": int(d),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
    dets = [{"image_id": 100 + i, "category_id": 10 + int(c), "score": float(s), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for i, p in enumerate(preds) for b, s, c in zip(p["boxes"].tolist(), p["scores"], p["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 10 + c, "name": str(c)} for c in range(k)]}
        gt.createIndex()
        e = COCOeval(gt, gt.loadRes(dets), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e


def test_meter_equals_pycocotools_run_directly():
    preds, targets = _random_results()
    m = DetectionMeter(3, ["a", "b", "c"])
    m.update(preds[:7], targets[:7], None)  # several batches
    m.update(preds[7:], targets[7:], None)
    r = m.compute()
    e = _pycocotools_directly(preds, targets, 3)
    assert r["count"] == 12 and set(r) >= {"map", "map50", "map75", "per_class", "count"}
    assert r["map"] == pytest.approx(e.stats[0], abs=1e-12)
    assert r["map50"] == pytest.approx(e.stats[1], abs=1e-12)
    assert r["map75"] == pytest.approx(e.stats[2], abs=1e-12)
    assert 0 < r["map"] < r["map50"] < 1
    precision = e.eval["precision"][:, :, :, 0, -1]
    for k, name in enumerate("abc"):
        p = precision[:, :, k]
        assert r["per_class"][name]["map"] == pytest.approx(p[p > -1].mean(), abs=1e-12)
        assert r["per_class"][name]["map50"] == pytest.approx(p[0][p[0] > -1].mean(), abs=1e-12)


def test_difficult_objects_are_ignored_not_missed():
    box = torch.tensor([[10.0, 10, 50, 50], [60, 60, 90, 90]])
    targets = [{"boxes": box, "labels": torch.tensor([0, 0]), "difficult": torch.tensor([False, True])}]
    found_one = [{"boxes": box[:1], "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    found_both = [{"boxes": box, "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}]
    for preds in (found_one, found_both):  # the difficult one needs no detection and its detection is no error
        m = DetectionMeter(1)
        m.update(preds, targets, None)
        assert m.compute()["map"] == pytest.approx(1.0)
    m = DetectionMeter(1)  # without the flag, missing it costs
    m.update(found_one, [{"boxes": box, "labels": torch.tensor([0, 0])}], None)
    assert m.compute()["map"] < 0.6


def test_meter_without_detections_or_ground_truth():
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    truth = {"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([1])}
    m = DetectionMeter(2, ["a", "b"])
    m.update([empty, empty], [truth, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], None)
    r = m.compute()
    assert r["map"] == r["map50"] == 0.0 and set(r["per_class"]) == {"b"} and r["count"] == 2
    m = DetectionMeter(2)
    m.update([{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}],
             [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}], None)
    r = m.compute()
    assert r["map"] == 0.0 and r["per_class"] == {}


def test_meter_is_quiet(capsys):
    preds, targets = _random_results(4)
    m = DetectionMeter(3)
    m.update(preds, targets, None)
    m.compute()
    assert capsys.readouterr().out == ""


def test_eval_result_and_tables():
    preds, targets = _random_results(6)
    m = DetectionMeter(3, ["a", "b", "c"])
    m.update(preds, targets, None)
    task = DetectionTask(3, ["a", "b", "c"])
    result = task.eval_result(m.compute())
    assert set(result) == {"map", "map50", "map75", "per_class", "count"}
    assert set(result["per_class"]["a"]) == {"map", "map50"}
    json.dumps(result)
    (_, _, rows), (_, columns, per_class) = task.eval_tables(m.compute())
    assert rows[0][0] == "mAP@[.5:.95]" and columns == ["class", "AP@[.5:.95]", "AP@0.5"] and len(per_class) == 3


# ---------------------------------------------------------------- a detector for the tests


class _Fixed(nn.Module):
    """Always the same detections (in input pixels)."""

    def __init__(self, boxes, scores, labels):
        super().__init__()
        self.out = {"boxes": torch.tensor(boxes, dtype=torch.float32), "scores": torch.tensor(scores),
                    "labels": torch.tensor(labels)}

    def forward(self, x):
        return [dict(self.out) for _ in range(len(x))]


def test_predict_lists_boxes_in_original_pixels_above_the_threshold():
    task = DetectionTask(2, ["cat", "dog"])
    model = _Fixed([[8, 8, 24, 16], [0, 0, 40, 40], [1, 1, 2, 2]], [0.9, 0.5, 0.1], [1, 0, 0])
    out = task.predict(model, torch.zeros(1, 3, 32, 32), (64, 96), topk=10, score_threshold=0.3)
    assert [d["label"] for d in out["detections"]] == ["dog", "cat"]
    assert out["detections"][0]["box"] == [24.0, 16.0, 72.0, 32.0]  # x by 96/32, y by 64/32
    assert out["detections"][1]["box"] == [0.0, 0.0, 96.0, 64.0]  # clipped to the image
    assert task.predict(model, torch.zeros(1, 3, 32, 32), (64, 96), topk=1)["detections"][0]["score"] == 0.9


def test_drawn_boxes_land_on_the_image(tmp_path):
    image = torch.zeros(3, 60, 80, dtype=torch.uint8)
    dets = [{"label": "cat", "index": 0, "score": 0.9, "box": [10.0, 20.0, 50.0, 40.0]}]
    path = draw_detections(image, dets, ["cat", "dog"], tmp_path / "x.png")
    a = np.asarray(Image.open(path))
    assert a.shape == (60, 80, 3)
    assert a[30, 10].any() and a[30, 50].any() and a[20, 30].any()  # the box's edges are drawn (PIL: x2 inclusive)
    assert not a[37, 45].any() and not a[5, 70].any()  # inside (below the label) and outside: untouched
    draw_detections(image[:1], [], ["cat"], tmp_path / "grey.png")  # grey image, nothing found
    assert np.asarray(Image.open(tmp_path / "grey.png")).shape == (60, 80, 3)


# ---------------------------------------------------------------- the commands, end to end


def test_train_eval_predict_end_to_end(tmp_path, capsys):
    """archzoo train / eval --json / predict --out --json on a VOC folder, with YOLOv8-n at 64 px
    (its smallest input; ``image_size`` reaches the detector's own transform too)."""
    from test_detection_data import write_shapes

    import archzoo

    data = write_shapes(tmp_path / "voc", "voc", n=16)
    bad = data / "015.xml"  # a box past the image's edge: --skip-bad leaves the image out and lists it
    bad.write_text(bad.read_text().replace("<xmax>", "<xmax>9", 1))
    run = tmp_path / "run"
    archzoo.train("yolov8n", str(data), out=run, epochs=1, batch_size=8, image_size=64, log="quiet", workers=0,
                  val_split=0.25, device="cpu", skip_bad=True)
    assert "015.xml\tobject 0" in (run / "skipped_files.txt").read_text()
    ckpt = run / "best.safetensors"
    rc, out, err = run_cli(["eval", ckpt, "--data", data, "--json", "--device", "cpu"], capsys)
    assert rc == 2 and "015.xml: object 0" in err and "outside the 48x48 image" in err
    rc, out, err = run_cli(["eval", ckpt, "--data", data, "--json", "--device", "cpu", "--skip-bad"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert {"map", "map50", "map75", "per_class", "count"} <= set(r) and r["count"] == 15 and r["skipped_files"] == 1
    assert r["data_description"].startswith("detected Pascal VOC XML: 15 images")
    images = sorted(data.glob("*.png"))[:2]
    rc, out, err = run_cli(["predict", ckpt, *images, "--out", tmp_path / "drawn", "--score-threshold", "0", "--json",
                            "--device", "cpu"], capsys)
    assert rc == 0, err
    preds = json.loads(out)["predictions"]
    assert [p["file"] for p in preds] == [str(i) for i in images]
    d = preds[0]["detections"][0]
    assert set(d) == {"label", "index", "score", "box"} and d["label"] in ("circle", "ellipse", "triangle")
    assert all(0 <= v <= 48 for v in d["box"])  # the written images are 48 px: original pixels, not the 64-px input
    assert (tmp_path / "drawn" / f"{images[0].stem}.png").is_file()
    rc, _, err = run_cli(["predict", ckpt, images[0], "--score-threshold", "2"], capsys)
    assert rc == 2 and "score-threshold" in err


# ---------------------------------------------------------------- archzoo cam on a detector (issue 15)


def test_cam_on_a_detector_is_eigencam_of_its_backbone_with_the_boxes(tmp_path, capsys):
    """Eigen-CAM (gradient-free) of a random YOLOv8-n's deepest backbone map lights the one object
    of a plain picture; ``archzoo cam`` picks it for a detector, draws the detections over the map
    at the image's own size, and refuses a gradient method and ``--class`` with the reason."""
    import torch.nn.functional as F

    import archzoo
    from archzoo.explain import detection_cam, explain, first_component

    torch.manual_seed(0)
    model = archzoo.create_model("yolov8n", num_classes=2, image_size=128).eval()
    x = torch.full((1, 3, 128, 128), 0.2)
    x[..., 70:110, 20:60] = 0.9
    inside = torch.zeros(128, 128, dtype=torch.bool)
    inside[70:110, 20:60] = True
    found = detection_cam(model, x)
    assert found.layer == "backbone" and found.maps.shape == (1, 128, 128) and set(found.detections[0]) >= {"boxes"}
    heat = found.maps[0]
    assert heat[inside].mean() > 2 * heat[~inside].mean()
    with torch.no_grad():  # by hand: the first principal component of the deepest map, rectified, upsampled
        hand = first_component(model.backbone(x)[-1]).relu()
    hand = F.interpolate(hand[:, None], size=(128, 128), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(heat, hand / hand.max(), atol=1e-5, rtol=0)
    torch.testing.assert_close(explain(model, x, "auto"), found.maps)  # the API picks Eigen-CAM too

    ckpt = tmp_path / "det.safetensors"
    archzoo.save_model(model, ckpt, class_names=["a", "b"], input_size=[3, 128, 128])
    picture = np.full((150, 200, 3), 50, np.uint8)
    picture[80:130, 30:90] = 230
    Image.fromarray(picture).save(tmp_path / "obj.png")
    rc, out, err = run_cli(["cam", ckpt, tmp_path / "obj.png", "--out", tmp_path / "maps", "--score-threshold", "0.01",
                            "--json", "--device", "cpu"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["method"] == "eigencam" and r["layer"] == "backbone"
    (entry,) = r["images"]
    assert entry["detections"] and all(0 <= v <= 200 for d in entry["detections"] for v in d["box"])
    drawn = np.asarray(Image.open(entry["overlay"]))
    assert drawn.shape == (150, 200, 3) and not np.array_equal(drawn, picture)
    for extra, needle in ((["--method", "gradcam"], "eigencam"), (["--class", "a"], "class-agnostic")):
        rc, _, err = run_cli(["cam", ckpt, tmp_path / "obj.png", "--out", tmp_path / "maps", *extra], capsys)
        assert rc == 2 and needle in err
