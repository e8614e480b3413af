"""The task-generic engine: segmentation and detection plug into the same Trainer as
classification, their metrics (a confusion matrix, gathered predictions) add up across processes,
and evaluation and prediction dispatch on the model's task."""

from __future__ import annotations

import json
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import archzoo
from archzoo.data import IGNORE_INDEX, split_dataset
from archzoo.data.shapes import load_shapes_dataset
from archzoo.engine import DetectionTask, SegmentationTask, TrainConfig, Trainer, make_task
from archzoo.engine.evaluate import evaluate_model, model_task
from archzoo.engine.loader import make_batches
from archzoo.engine.metrics import DetectionMeter, SegmentationMeter, average_precision
from archzoo.validate import UserError


# ---------------------------------------------------------------- metrics by hand


def test_segmentation_meter_counts_pixels_and_skips_ignored_ones():
    truth = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, IGNORE_INDEX]]])  # one 2x4 image, one pixel ignored
    pred = torch.tensor([[[0, 1, 1, 1], [0, 2, 0, 1]]])
    logits = F.one_hot(pred, 3).permute(0, 3, 1, 2).float() * 10
    m = SegmentationMeter(3, "cpu", IGNORE_INDEX, ["bg", "a", "b"])
    m.update(logits, {"mask": truth}, None)
    r = m.compute()
    # confusion (rows: truth): bg -> [2, 1, 0], a -> [0, 2, 0], b -> [1, 0, 1]
    assert r["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    iou = {"bg": 2 / 4, "a": 2 / 3, "b": 1 / 2}
    assert r["per_class_iou"] == pytest.approx(iou)
    assert r["miou"] == pytest.approx(sum(iou.values()) / 3) and r["pixel_accuracy"] == pytest.approx(5 / 7)
    # logits at half the resolution are upsampled to the mask; a class absent from truth and prediction has no IoU
    m = SegmentationMeter(4, "cpu", IGNORE_INDEX)
    m.update(F.one_hot(torch.zeros(1, 2, 2, dtype=torch.int64), 4).permute(0, 3, 1, 2).float(),
             {"mask": torch.zeros(1, 4, 4, dtype=torch.int64)}, None)
    assert m.compute()["miou"] == 1.0


def _det(boxes, scores, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def test_average_precision_by_hand():
    a, b, far = [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]
    targets = [{"boxes": torch.tensor([a, b], dtype=torch.float32), "labels": torch.tensor([0, 0])}]
    perfect = [_det([a, b], [0.9, 0.8], [0, 0])]
    assert average_precision(perfect, targets, 0) == 1.0
    # ranked hit, miss, hit: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 + 2/3 * 1/2
    ranked = [_det([a, far, b], [0.9, 0.8, 0.7], [0, 0, 0])]
    assert average_precision(ranked, targets, 0) == pytest.approx(0.5 + 2 / 3 * 0.5)
    # a second detection of a matched box is a false positive; a wrong class finds nothing
    dup = [_det([a, a], [0.9, 0.8], [0, 0])]
    assert average_precision(dup, targets, 0) == pytest.approx(0.5)
    assert average_precision([_det([a, b], [0.9, 0.8], [1, 1])], targets, 0) == 0.0
    assert average_precision(perfect, targets, 1) is None  # no ground truth of class 1
    # the meter: mean over classes with ground truth, images from several updates
    m = DetectionMeter(2, ["x", "y"])
    m.update(ranked, targets, None)
    m.update(perfect, targets, None)
    r = m.compute()
    assert r["count"] == 2 and set(r["ap50_per_class"]) == {"x"} and r["map50"] == r["ap50_per_class"]["x"]


def _gather_worker(rank: int, world: int, store: str, out: str) -> None:
    """One of two gloo processes: each meters its half of the images, compute() combines them."""
    import torch.distributed as td

    td.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        preds, targets, logits, masks = _fake_results()
        det = DetectionMeter(3)
        det.update(preds[rank::world], targets[rank::world], None)
        seg = SegmentationMeter(3, "cpu", IGNORE_INDEX)
        seg.update(logits[rank::world], {"mask": masks[rank::world]}, None)
        result = {"det": det.compute(), "seg": seg.compute(), "gathered": len(det.gather()[0])}
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        td.destroy_process_group()


def _fake_results(n: int = 9):
    """Seeded detections with noisy boxes and scores, and random segmentation logits and masks."""
    g = torch.Generator().manual_seed(0)
    preds, targets = [], []
    for _ in range(n):
        k = int(torch.randint(1, 4, (), generator=g))
        xy = torch.rand(k, 2, generator=g) * 50
        boxes = torch.cat([xy, xy + 5 + torch.rand(k, 2, generator=g) * 20], 1)
        labels = torch.randint(0, 3, (k,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
        noisy = boxes + torch.randn(k, 4, generator=g) * 3
        preds.append({"boxes": torch.cat([noisy, boxes[:1] + 30]), "scores": torch.rand(k + 1, generator=g),
                      "labels": torch.cat([labels, labels[:1]])})
    logits = torch.randn(n, 3, 6, 6, generator=g)
    masks = torch.randint(0, 3, (n, 6, 6), generator=g)
    masks[:, 0, 0] = IGNORE_INDEX
    return preds, targets, logits, masks


def test_metrics_gather_across_two_gloo_processes(tmp_path):
    """Detection AP needs every image's predictions in one place: each process holds half, and
    compute() on both gives what one process with all of them gives; the segmentation confusion
    matrix is summed the same way."""
    import torch.multiprocessing as mp

    mp.start_processes(_gather_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, start_method="fork")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    preds, targets, logits, masks = _fake_results()
    det, seg = DetectionMeter(3), SegmentationMeter(3, "cpu", IGNORE_INDEX)
    det.update(preds, targets, None)
    seg.update(logits, {"mask": masks}, None)
    whole = json.loads(json.dumps({"det": det.compute(), "seg": seg.compute(), "gathered": 9}))
    assert 0 < whole["det"]["map50"] < 1 and whole["det"]["count"] == 9
    for r in (r0, r1):
        assert r["gathered"] == 9 and r["det"]["count"] == 9
        # AP is the same set of scores, ranked: equal up to the order the float sums ran in
        assert r["det"]["ap50_per_class"] == pytest.approx(whole["det"]["ap50_per_class"], abs=1e-12)
        assert r["seg"]["confusion"] == whole["seg"]["confusion"] and r["seg"]["miou"] == pytest.approx(whole["seg"]["miou"])
        assert r["seg"]["loss"] == pytest.approx(whole["seg"]["loss"])


# ---------------------------------------------------------------- segmentation through the trainer


class PixelSegmenter(nn.Module):
    """A 1x1 convolution on each pixel's colour and its squared distance from the image's mean
    colour: enough to tell an object from its background, nothing about shape."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(6, num_classes, 1)

    def forward(self, x):
        return self.conv(torch.cat([x, (x - x.mean((2, 3), keepdim=True)) ** 2], 1))


@pytest.fixture(scope="module")
def objects():
    """shapes-seg with every shape one class "object": background vs object."""
    ds = load_shapes_dataset("train", task="segmentation", n=400)
    return split_dataset(ds.remap_classes(["background", "object"], torch.tensor([0] + [1] * 8)), 0.2, seed=0)


def test_a_pixel_segmenter_learns_shapes_masks(objects, tmp_path):
    train, val = objects
    torch.manual_seed(0)
    model = PixelSegmenter(2)
    cfg = TrainConfig(epochs=4, batch_size=32, opt="adamw", lr=0.05, weight_decay=0.0, pad=2)
    trainer = Trainer(model, train, val, config=cfg, out=tmp_path, log="quiet")
    s = trainer.fit()
    miou = [h["val_miou"] for h in s["history"]]
    assert s["task"] == "segmentation" and s["fast_path"] and s["val_count"] == len(val)
    assert miou[-1] > miou[0] + 0.1 and miou[-1] > 0.75, miou  # all-background would score 0.44
    assert s["best_val_miou"] == max(miou) and s["history"][s["best_epoch"] - 1]["val_miou"] == max(miou)
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_loss,train_pixel_accuracy,val_loss,val_miou,val_pixel_accuracy,epoch_time,images_per_s"
    for name in ("confusion.png", "predictions.png", "curves.png", "best.safetensors", "state.safetensors"):
        assert (tmp_path / name).is_file(), name
    # the task's evaluation of the final weights is the run's last validation
    m = evaluate_model(model, val, input_size=32, mean=trainer.mean, std=trainer.std, device="cpu",
                       task=SegmentationTask(2, val.class_names))
    assert m["miou"] == pytest.approx(s["val_miou"]) and m["count"] == len(val)


def test_segmentation_resume_continues_exactly(objects, tmp_path, monkeypatch):
    from archzoo.checkpoint import read_tensors
    from archzoo.engine.progress import RunLog

    train, val = objects
    cfg = TrainConfig(epochs=2, batch_size=32, opt="adamw", lr=0.05, weight_decay=0.0, pad=2, deterministic=True, seed=2)

    def run(out, resume=False):
        torch.manual_seed(0)
        return Trainer(PixelSegmenter(2), train, val, config=cfg, out=out, log="quiet").fit(resume=resume)

    whole = run(tmp_path / "a")
    real_write = RunLog.write

    def write_then_crash(self, history):  # stop right after the first epoch's checkpoint
        real_write(self, history)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunLog, "write", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    monkeypatch.undo()
    resumed = run(tmp_path / "b", resume=True)
    assert [h["val_miou"] for h in resumed["history"]] == [h["val_miou"] for h in whole["history"]]
    a, b = read_tensors(tmp_path / "a" / "state.safetensors")[0], read_tensors(tmp_path / "b" / "state.safetensors")[0]
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_device_and_dataloader_paths_give_the_same_eval_batches(objects):
    _, val = objects
    task = SegmentationTask(2)
    view = dict(task=task, input_size=32, mean=[0.5] * 3, std=[0.25] * 3, in_chans=3)
    fast = make_batches(val, torch.device("cpu"), 16, train=False, cfg=TrainConfig(), **view)
    slow = make_batches(val, torch.device("cpu"), 16, train=False, cfg=TrainConfig(fast_path=False, workers=0), **view)
    assert type(fast).__name__ == "DeviceBatches" and type(slow).__name__ == "LoaderBatches"
    for (x1, y1), (x2, y2) in zip(fast.epoch(0), slow.epoch(0)):
        torch.testing.assert_close(x1, x2)
        assert torch.equal(y1["mask"], y2["mask"]) and y1["mask"].dtype == torch.int64
    # training batches from the DataLoader: masks cropped and flipped with their images (see test_dense_data)
    x, y = next(iter(make_batches(val, torch.device("cpu"), 16, train=True, cfg=TrainConfig(fast_path=False, workers=0),
                                  **view).epoch(0)))
    assert x.shape == (16, 3, 32, 32) and y["mask"].shape == (16, 32, 32)


# ---------------------------------------------------------------- detection through the trainer


class BoxRegressor(nn.Module):
    """The detector contract at its smallest: one box and class per image from pooled features.
    Training: ``model(images, targets)`` -> a dict of losses (L1 on the image's largest box,
    cross-entropy on its class). Eval: ``model(images)`` -> one ``{"boxes", "scores", "labels"}``
    per image, in input pixels."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.box, self.cls = nn.Linear(32, 4), nn.Linear(32, num_classes)

    def forward(self, images, targets=None):
        f, s = self.body(images), images.shape[-1]
        centre, size = self.box(f).sigmoid().split(2, 1)
        boxes = torch.cat([centre - size / 2, centre + size / 2], 1) * s
        logits = self.cls(f)
        if not self.training:
            p = logits.softmax(1)
            return [{"boxes": b[None], "scores": p[i].max()[None], "labels": p[i].argmax()[None]}
                    for i, b in enumerate(boxes)]
        has = torch.tensor([len(t["boxes"]) > 0 for t in targets])
        largest = [t["boxes"][((t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1)).argmax()] if len(t["boxes"]) else None
                   for t in targets]
        label = torch.stack([t["labels"][((t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1)).argmax()] for t in targets
                             if len(t["boxes"])])
        truth = torch.stack([b for b in largest if b is not None])
        return {"loss_box": F.l1_loss(boxes[has], truth) / s, "loss_cls": F.cross_entropy(logits[has], label)}


def test_a_detector_trains_on_the_sum_of_its_losses(tmp_path):
    ds = load_shapes_dataset("train", task="detection", n=320)
    train, val = split_dataset(ds, 0.2, seed=0)
    torch.manual_seed(0)
    model = BoxRegressor(8)
    cfg = TrainConfig(epochs=3, batch_size=32, opt="adamw", lr=3e-3, weight_decay=0.0, workers=0)
    trainer = Trainer(model, train, val, config=cfg, out=tmp_path, log="quiet")
    assert isinstance(trainer.task, DetectionTask) and type(trainer.train_batches).__name__ == "LoaderBatches"
    x, targets = next(iter(trainer.train_batches.epoch(0)))  # variable-length targets, one dict per image
    assert isinstance(targets, list) and len(targets) == 32 and len({len(t["boxes"]) for t in targets}) > 1
    loss = trainer.task.loss(model(x, targets), targets)
    parts = model(x, targets)
    torch.testing.assert_close(loss, parts["loss_box"] + parts["loss_cls"])
    s = trainer.fit()
    losses = [h["train_loss"] for h in s["history"]]
    assert losses[-1] < losses[0], losses
    assert s["val_count"] == len(val) and all(0 <= h["val_map50"] <= 1 for h in s["history"])
    assert s["best_val_map50"] == max(h["val_map50"] for h in s["history"])
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,lr,train_loss,val_map50,epoch_time,images_per_s"
    assert (tmp_path / "predictions.png").is_file()


# ---------------------------------------------------------------- choosing the task


def test_the_task_follows_the_data_and_refuses_what_does_not_fit(objects):
    train, val = objects
    with pytest.raises(UserError, match="mixup: not available for a segmentation model .* --augment takes basic, none,"):
        make_task("segmentation", train.class_names, cfg=TrainConfig(mixup=0.2))
    with pytest.raises(ValueError, match="resnet20 is a classification model and the data is for segmentation"):
        Trainer(archzoo.create_model("resnet20", num_classes=2), train, val, config=TrainConfig(epochs=1), log="quiet")
    digits = archzoo.data.load_dataset("digits", val_split=0.0, image_size=8).train
    with pytest.raises(ValueError, match="is a segmentation model and the data is for classification"):
        evaluate_model(PixelSegmenter(2), digits, input_size=8, mean=[0.5], std=[0.5], device="cpu",
                       task=SegmentationTask(2))


def test_eval_and_predict_dispatch_on_the_models_task(objects):
    _, val = objects
    model = PixelSegmenter(2)
    model.card = types.SimpleNamespace(task="segmentation", name="toy")  # what a zoo segmenter's card says
    task = model_task(model, ["background", "object"])
    assert isinstance(task, SegmentationTask) and task.num_classes == 2
    m = evaluate_model(model, val, input_size=32, mean=[0.5] * 3, std=[0.25] * 3, device="cpu")
    assert set(task.eval_result(m)) == {"miou", "pixel_accuracy", "dice", "pixel_error", "loss", "count", "per_class_iou",
                                        "per_class_dice", "confusion"}
    (title, columns, rows), per_class = task.eval_tables(m)
    assert rows[0][0] == "mean IoU" and per_class[2][0][0] == "background"
    image = val.images[0]
    x = task.input_transform(48, [0.5] * 3, [0.25] * 3, 3)(image)[None]
    p = task.predict(model, x, (64, 80), topk=2)
    assert x.shape == (1, 3, 48, 48) and 1 <= len(p["top"]) <= 2
    assert sum(t["share"] for t in p["top"]) == pytest.approx(1.0) and {"class", "index", "share"} == set(p["top"][0])
    det = DetectionTask(8)
    out = det.predict(BoxRegressor(8).eval(), torch.zeros(1, 3, 32, 32), (64, 96), topk=5)
    (box,) = [t["box"] for t in out["detections"]]
    assert box[2] <= 96 and box[3] <= 64  # in the original image's pixels
