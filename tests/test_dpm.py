"""DPM (Felzenszwalb et al. 2010): the distance transform against brute force, the HOG pyramid's
shapes, part placement where the answer is known, a tiny latent-SVM fit on shapes that learns
and repeats itself, checkpoints, bad input, and train / eval / predict through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archzoo
import archzoo.data.shapes
from archzoo.cli.main import main
from archzoo.detection.dpm_features import (HOG_DIM, distance_transform_1d, distance_transform_2d, feature_pyramid,
                                            hog_map, pyramid_scales)
from archzoo.engine.metrics import DetectionMeter
from archzoo.validate import UserError

from detection_helpers import shapes_detection

SMALL = dict(root_sizes=((4, 4),), num_parts=2, part_size=(3, 3), max_scale=3.0)



def _brute_1d(f, a, b):
    q = np.arange(f.shape[1])
    d = q[None, :] - q[:, None]  # [p, q]: the displacement q - p
    scores = f[:, None, :] - a[:, None, None] * d ** 2 - b[:, None, None] * d
    return scores.max(2), scores.argmax(2)


def test_distance_transform_1d_equals_brute_force():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 23):
        f = rng.normal(size=(40, n)) * 3
        a, b = rng.uniform(0.01, 3, 40), rng.normal(size=40)
        value, arg = distance_transform_1d(f, a, b)
        want, _ = _brute_1d(f, a, b)
        np.testing.assert_allclose(value, want, atol=1e-12)
        d = arg - np.arange(n)[None, :]  # the argmax attains the maximum
        np.testing.assert_allclose(np.take_along_axis(f, arg, 1) - a[:, None] * d ** 2 - b[:, None] * d, want, atol=1e-12)


def test_distance_transform_2d_equals_brute_force():
    rng = np.random.default_rng(1)
    response = rng.normal(size=(3, 6, 8))
    deformation = np.c_[rng.normal(size=(3, 2)), rng.uniform(0.05, 1, (3, 2))]
    value, best_y, best_x = distance_transform_2d(response, deformation)
    yy, xx = np.mgrid[:6, :8]
    for p in range(3):
        for y in range(6):
            for x in range(8):
                dx, dy = xx - x, yy - y
                s = response[p] - np.tensordot(deformation[p], np.stack([dx, dy, dx ** 2, dy ** 2]), 1)
                assert value[p, y, x] == pytest.approx(s.max(), abs=1e-12)
                assert s[best_y[p, y, x], best_x[p, y, x]] == pytest.approx(s.max(), abs=1e-12)


def test_deformation_cost_decides_between_a_near_and_a_far_peak():
    """A part anchored at x = 2: a weak match 1 cell away, a strong one 4 cells away."""
    response = np.full((1, 1, 10), -5.0)
    response[0, 0, 3], response[0, 0, 6] = 1.0, 1.5
    stiff = distance_transform_2d(response, np.array([[0.0, 0.0, 0.1, 0.1]]))
    loose = distance_transform_2d(response, np.array([[0.0, 0.0, 0.01, 0.01]]))
    assert stiff[2][0, 0, 2] == 3 and stiff[0][0, 0, 2] == pytest.approx(1.0 - 0.1)  # 1.5 - 1.6 loses
    assert loose[2][0, 0, 2] == 6 and loose[0][0, 0, 2] == pytest.approx(1.5 - 0.16)
    # a linear cost that favours moving right
    biased = distance_transform_2d(response, np.array([[-0.5, 0.0, 0.1, 0.1]]))
    assert biased[2][0, 0, 2] == 6


def test_hog_pyramid_shapes():
    assert hog_map(np.random.rand(64, 48, 3)).shape == (7, 5, HOG_DIM)
    assert hog_map(np.random.rand(40, 40)).shape == (4, 4, HOG_DIM)
    assert hog_map(np.random.rand(12, 40, 3)).shape[0] == 0  # under two cells: empty
    scales = pyramid_scales((64, 64), 2.0, 4, 2)
    assert scales[0] == 2.0 and scales[4] == pytest.approx(1.0) and np.all(np.diff(scales) < 0)
    assert 64 * scales[-1] / 8 - 1 >= 2
    pyr = feature_pyramid(torch.rand(3, 64, 64), scales)
    for s, f in zip(pyr.scales, pyr.features):
        assert f.shape == (round(64 * s) // 8 - 1, round(64 * s) // 8 - 1, HOG_DIM) and f.dtype == torch.float32
    # an octave down halves the cells (the parts' level sits `interval` above the root's)
    assert pyr.features[0].shape[0] + 1 == 2 * (pyr.features[4].shape[0] + 1)


def test_a_hand_made_part_is_placed_on_its_pattern():
    """One part whose filter is the HOG of a bright square: the distance transform puts it there."""
    model = archzoo.create_model("dpm_hog", num_classes=1, root_sizes=((2, 2),), num_parts=1, part_size=(2, 2),
                                 max_scale=1.0).eval()
    image = torch.zeros(3, 96, 96)
    image[:, 40:56, 56:72] = 1.0
    pyr = feature_pyramid(image, [1.0, 0.5])
    with torch.no_grad():
        model.filters.parts[0, 0] = pyr.features[0][4:6, 6:8]  # the square's cells at the part level
        model.filters.deformation[0, 0] = torch.tensor([0.0, 0.0, 0.01, 0.01])
    model.interval = 1
    (level,) = model.score_pyramid(pyr)
    py, px = model.pad
    s = level.scores[0]
    y, x = np.unravel_index(np.argmax(s), s.shape)
    qy, qx = level.placement(0, y, x)[0]
    assert (qy - 2 * py, qx - 2 * px) == (4, 6)  # the part found its pattern (in unpadded cells)


def _map50(model, images, targets, classes):
    meter = DetectionMeter(classes, [str(i) for i in range(classes)])
    with torch.no_grad():
        out = model(images)
    meter.update(out, [{**t, "difficult": torch.zeros(len(t["labels"]), dtype=torch.bool)} for t in targets], None)
    return meter.compute()["map50"]


def _random_boxes(images, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for img in images:
        s = img.shape[-1]
        xy = torch.rand(30, 2, generator=g) * s * 0.7
        wh = torch.rand(30, 2, generator=g) * s * 0.4 + 6
        out.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=s)], 1), "scores": torch.rand(30, generator=g),
                    "labels": torch.randint(classes, (30,), generator=g)})
    return out


def test_tiny_fit_on_shapes_learns_and_round_trips(one_thread, tmp_path):
    images, targets = shapes_detection(16, size=64, objects=(1, 2), classes=2)
    test_images, test_targets = shapes_detection(12, size=64, subset="test", objects=(1, 2), classes=2)
    model = archzoo.create_model("dpm_hog", num_classes=2, **SMALL)
    history = model.fit(images, targets, rounds=1, seed=0)
    assert len(history) == 1 and all(h["positives"] > 10 and h["negatives"] > 10 for h in history)
    ap = _map50(model, test_images, test_targets, 2)
    meter = DetectionMeter(2, ["0", "1"])
    meter.update(_random_boxes(test_images, 2), [{**t, "difficult": torch.zeros(len(t["labels"]), dtype=torch.bool)}
                                                 for t in test_targets], None)
    chance = meter.compute()["map50"]
    print(f"DPM on 12 held-out shapes images: AP@0.5 {ap:.3f} (random boxes {chance:.3f})")
    assert ap >= 0.35 and ap > chance + 0.25
    path = tmp_path / "dpm.safetensors"
    archzoo.save_model(model, path, class_names=["a", "b"])
    loaded = archzoo.create_model("dpm_hog", num_classes=2, weights=path, **SMALL).eval()
    with torch.no_grad():
        a, b = model(test_images[:3]), loaded(test_images[:3])
    for x, y in zip(a, b):
        assert torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["scores"], y["scores"])
        assert x["boxes"].shape[1] == 4 and x["labels"].dtype == torch.int64


def test_two_fits_with_one_seed_give_equal_filters(one_thread):
    images, targets = shapes_detection(5, size=64, objects=(1, 2), classes=2)
    states = []
    for _ in range(2):
        model = archzoo.create_model("dpm_hog", num_classes=2, **SMALL)
        model.fit(images, targets, rounds=1, seed=3)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert states[0]["filters.root"].abs().sum() > 0 and states[0]["filters.parts"].abs().sum() > 0


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="root_sizes"):
        archzoo.create_model("dpm_hog", root_sizes=((0, 4),))
    with pytest.raises(ValueError, match="part_size"):
        archzoo.create_model("dpm_hog", root_sizes=((2, 2),), part_size=(5, 5))
    model = archzoo.create_model("dpm_hog", num_classes=2, **SMALL)
    images, targets = shapes_detection(2, size=64, classes=2)
    with pytest.raises(UserError, match="not trained by gradients"):
        model.train()(images, targets)
    with pytest.raises(UserError, match="no boxes"):
        model.fit(images, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * 2)
    with pytest.raises(UserError, match="rounds"):
        model.fit(images, targets, rounds=-1)
    with pytest.raises(ValueError, match="labels must be int64 in 0..1"):
        model.fit(images, [{"boxes": t["boxes"], "labels": t["labels"] + 5} for t in targets])
    with pytest.raises(UserError, match="not a neural network"):
        model.eval().forward_batch(torch.zeros(1, 3, 64, 64))


def test_train_eval_predict_through_the_cli(tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    code = main(["train", "dpm_hog", "--data", "shapes-det", "--image-size", "64", "--train-limit", "6",
                 "--val-limit", "3", "--epochs", "1", "--quiet", "--out", str(run),
                 "--model-kwargs", "root_sizes=[[4,4]]", "num_parts=1", "part_size=[3,3]", "max_scale=2.5"])
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fitted"] and summary["epochs"] == 1 and summary["val_map50"] is not None
    assert {"last.safetensors", "metrics.csv", "predictions.png"} <= set(summary["files"])
    capsys.readouterr()
    # gradient options do not apply to a fitted model
    assert main(["train", "dpm_hog", "--data", "shapes-det", "--lr", "0.1", "--out", str(tmp_path / "x")]) != 0
    assert "not by gradients" in capsys.readouterr().err
    assert main(["eval", str(run / "last.safetensors"), "--data", "shapes-det",
                 "--held-out", "0.002", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["map50"] <= 1.0 and result["count"] > 0
    from PIL import Image

    picture = tmp_path / "shape.png"
    images, _ = shapes_detection(1, size=64, classes=8)
    Image.fromarray((images[0] * 255).byte().permute(1, 2, 0).numpy()).save(picture)
    out = tmp_path / "pred"
    assert main(["predict", str(run / "last.safetensors"), str(picture), "--json", "--score-threshold", "0",
                 "--out", str(out)]) == 0
    preds = json.loads(capsys.readouterr().out)
    (pred,) = preds["predictions"]
    assert pred["detections"] and list(out.glob("*.png"))  # score threshold 0: the best boxes, drawn
    assert all(d["label"] in archzoo.data.shapes.CLASS_NAMES and len(d["box"]) == 4 for d in pred["detections"])
