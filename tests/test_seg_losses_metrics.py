"""Segmentation losses (the ``--loss`` grammar, weighted CE by median frequency, U-Net's border
weights, soft Dice, focal), their wiring into the engine, and the segmentation metrics checked
against scikit-learn."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archzoo.data import IGNORE_INDEX, ImageDataset
from archzoo.engine import TrainConfig, Trainer, make_task
from archzoo.engine.metrics import SegmentationMeter
from archzoo.models.base import AuxLogits
from archzoo.segmentation.losses import (
    SegmentationLoss,
    cross_entropy,
    dataset_class_weights,
    dice_loss,
    focal_loss,
    median_frequency_weights,
    parse_loss,
    pixel_counts,
    unet_weight_map,
)
from archzoo.validate import UserError


def _batch(seed=0, b=2, k=4, h=9, w=11, ignored=0.15):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, h, w, generator=g) * 2
    mask = torch.randint(0, k, (b, h, w), generator=g)
    mask[torch.rand(b, h, w, generator=g) < ignored] = IGNORE_INDEX
    return logits, mask


# ---------------------------------------------------------------- the grammar and its wiring


def test_loss_specs_parse_and_bad_ones_name_the_terms():
    assert parse_loss("ce") == [(1.0, "ce")]
    assert parse_loss("ce+dice") == [(1.0, "ce"), (1.0, "dice")]
    assert parse_loss(" 0.5*CE + dice ") == [(0.5, "ce"), (1.0, "dice")]
    assert parse_loss(".25*focal+2*wce+1e-1*unet") == [(0.25, "focal"), (2.0, "wce"), (0.1, "unet")]
    for bad, words in (("", "terms: ce, wce, unet, dice, focal"), ("lovasz", "one of ce, wce, unet, dice, focal"),
                       ("ce+", "''"), ("ce+ce", "twice"), ("0*ce", "positive"), ("-1*ce", "cannot read"),
                       ("ce*0.5", "cannot read")):
        with pytest.raises(UserError, match=words.replace("*", r"\*")):
            parse_loss(bad)
    with pytest.raises(UserError, match="lovasz"):
        TrainConfig(loss="ce+lovasz")
    assert TrainConfig(loss="wce+dice").loss == "wce+dice"


def test_the_train_command_takes_loss_into_the_recipe():
    from archzoo.cli.train import add_recipe_arguments, recipe_options

    p = argparse.ArgumentParser()
    add_recipe_arguments(p)
    assert recipe_options(p.parse_args(["--loss", "0.5*ce+dice"])) == {"loss": "0.5*ce+dice"}
    assert "loss" not in recipe_options(p.parse_args([]))  # left out: the recipe's value


def test_other_tasks_refuse_a_segmentation_loss():
    for task in ("classification", "detection"):
        with pytest.raises(UserError, match="segmentation loss.*leave --loss out"):
            make_task(task, ["a", "b"], cfg=TrainConfig(loss="dice"))
    assert make_task("classification", ["a", "b"], cfg=TrainConfig(loss="ce")).name == "classification"
    with pytest.raises(ValueError, match="train_data"):
        make_task("segmentation", ["bg", "a"], cfg=TrainConfig(loss="wce"))


# ---------------------------------------------------------------- SegNet's class weights


def test_median_frequency_weights_by_hand():
    # three 2x2 masks: [4 bg], [2 bg, 2 a], [1 bg, 1 a, 2 b]
    masks = torch.tensor([[[0, 0], [0, 0]], [[0, 0], [1, 1]], [[0, 1], [2, 2]]], dtype=torch.uint8)
    counts = pixel_counts(masks, 4)
    assert counts.tolist() == [[4, 0, 0, 0], [2, 2, 0, 0], [1, 1, 2, 0]]
    # freq(c) = pixels of c / pixels of the images showing c: bg 7/12, a 3/8, b 2/4; median 1/2
    expected = [0.5 / (7 / 12), 0.5 / (3 / 8), 1.0, 1.0]  # class 3 never occurs: weight 1
    assert median_frequency_weights(counts).tolist() == pytest.approx(expected)
    # from totals alone, freq(c) = pixels of c / all pixels: 7/12, 3/12, 2/12; median 3/12
    assert median_frequency_weights(counts.sum(0)).tolist() == pytest.approx([3 / 7, 1.0, 1.5, 1.0])
    # an even number of classes present: the median is the mean of the middle two
    assert median_frequency_weights(torch.tensor([1, 2, 3, 6])).tolist() == pytest.approx([2.5, 1.25, 2.5 / 3, 2.5 / 6])
    # ignored pixels are not counted
    masks[0, 0, 0] = IGNORE_INDEX
    assert pixel_counts(masks, 4)[0].tolist() == [3, 0, 0, 0]


def test_weighted_cross_entropy_is_the_weighted_mean_over_scored_pixels():
    logits, mask = _batch()
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    valid = mask != IGNORE_INDEX
    nll = -logits.log_softmax(1).gather(1, mask.clamp(max=3)[:, None])[:, 0]
    expected = (w[mask[valid]] * nll[valid]).sum() / w[mask[valid]].sum()
    torch.testing.assert_close(SegmentationLoss("wce", 4, class_weights=w)(logits, mask), expected)
    torch.testing.assert_close(SegmentationLoss("ce", 4)(logits, mask), nll[valid].mean())
    with pytest.raises(ValueError, match="wce needs class weights"):
        SegmentationLoss("wce", 4)


# ---------------------------------------------------------------- U-Net's border weights


def test_unet_weights_by_hand_between_two_cells():
    """Two cells (rows 5..14; columns 5..12 and 15..22) two pixels apart: a gap pixel is 1 from
    one cell and 2 from the other, w = 1 + 10 exp(-(1 + 2)^2 / (2 5^2))."""
    mask = torch.zeros(20, 30, dtype=torch.long)
    mask[5:15, 5:13] = 1
    mask[5:15, 15:23] = 1
    w = unet_weight_map(mask)
    gap = 1 + 10 * math.exp(-9 / 50)
    assert float(w[10, 13]) == pytest.approx(gap, rel=1e-6) and float(w[10, 14]) == pytest.approx(gap, rel=1e-6)
    corner = math.sqrt(50) + math.sqrt(250)  # (0, 0) to the cells' nearest pixels (5, 5) and (5, 15)
    assert float(w[0, 0]) == pytest.approx(1 + 10 * math.exp(-corner ** 2 / 50), rel=1e-6)
    assert float(w[10, 8]) == 1.0  # inside a cell: w_c alone
    # class weights give w_c; an ignored pixel weighs nothing; one cell has no border term
    mask[0, 29] = IGNORE_INDEX
    w = unet_weight_map(mask, class_weights=torch.tensor([0.5, 4.0]))
    assert float(w[10, 8]) == 4.0 and float(w[0, 29]) == 0.0 and float(w[10, 13]) == pytest.approx(gap - 0.5, rel=1e-6)
    mask[:, 15:] = 0
    assert torch.equal(unet_weight_map(mask)[mask == 0], torch.ones(int((mask == 0).sum())))


def test_unet_weights_match_a_whole_image_computation_per_cell():
    """Distances found within each cell's grown box equal those over the whole image, up to the
    documented truncation (a border term below 10 exp(-18))."""
    from scipy import ndimage

    g = np.random.default_rng(0)
    mask = np.zeros((64, 80), np.int64)
    for _ in range(14):
        y, x, r = g.integers(0, 64), g.integers(0, 80), g.integers(2, 7)
        mask[max(y - r, 0):y + r, max(x - r, 0):x + r] = g.integers(1, 3)  # two foreground classes
    cells, n = ndimage.label(mask > 0)
    assert n >= 4
    d = np.sort(np.stack([ndimage.distance_transform_edt(cells != i) for i in range(1, n + 1)]), axis=0)
    expected = 1 + 10 * np.exp(-((d[0] + d[1]) ** 2) / 50) * (mask == 0)
    got = unet_weight_map(torch.from_numpy(mask)).numpy()
    assert np.abs(got - expected).max() < 10 * math.exp(-18) + 1e-5


# ---------------------------------------------------------------- Dice and focal


def test_soft_dice_by_hand_and_blind_to_ignored_pixels():
    logits, mask = _batch(k=3)
    mask[mask == 2] = 0  # class 2 absent from the truth: not averaged
    p = logits.softmax(1)
    valid = mask != IGNORE_INDEX
    dices = []
    for c in (0, 1):
        pc, gc = p[:, c][valid], (mask[valid] == c).float()
        dices.append(2 * (pc * gc).sum() / (pc.sum() + gc.sum()))
    torch.testing.assert_close(dice_loss(logits, mask), 1 - torch.stack(dices).mean())
    changed = torch.where(valid[:, None], logits, 50 * torch.randn_like(logits))  # other logits where ignored
    torch.testing.assert_close(dice_loss(changed, mask), dice_loss(logits, mask))
    perfect = F.one_hot(mask.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 40
    assert float(dice_loss(perfect, mask)) < 1e-6


def test_focal_loss_by_hand_and_equal_to_ce_at_gamma_zero():
    logits, mask = _batch()
    valid = mask != IGNORE_INDEX
    logpt = logits.log_softmax(1).gather(1, mask.clamp(max=3)[:, None])[:, 0][valid]
    torch.testing.assert_close(focal_loss(logits, mask), (-(1 - logpt.exp()) ** 2 * logpt).mean())
    torch.testing.assert_close(focal_loss(logits, mask, gamma=0.0), F.cross_entropy(logits, mask, ignore_index=255))


def test_a_sum_of_terms_and_the_task_with_auxiliary_logits():
    logits, mask = _batch(k=3)
    mask[:, 4:] = 0  # a background region for U-Net's border term
    weights = torch.tensor([1.0, 2.0, 0.5])
    loss = SegmentationLoss("0.5*ce+2*dice+unet", 3, class_weights=weights)
    pw = loss.pixel_weights(mask)
    assert pw.shape == mask.shape and torch.equal(pw[0], unet_weight_map(mask[0], class_weights=weights))
    expected = (0.5 * F.cross_entropy(logits, mask, ignore_index=255) + 2 * dice_loss(logits, mask)
                + cross_entropy(logits, mask, pixel_weights=pw))
    torch.testing.assert_close(loss(logits, mask), expected)
    # the task: main + aux_weight * aux, with logits at half resolution upsampled to the mask
    task = make_task("segmentation", ["bg", "a", "b"], cfg=TrainConfig(loss="ce+dice", aux_weight=0.4))
    small = logits[..., ::2, ::2]
    up = F.interpolate(small, size=mask.shape[-2:], mode="bilinear", align_corners=False)
    crit = SegmentationLoss("ce+dice", 3)
    torch.testing.assert_close(task.loss(AuxLogits(small, (logits,)), {"mask": mask}),
                               crit(up, mask) + 0.4 * crit(logits, mask))


@pytest.mark.parametrize("spec", ["ce+dice", "wce", "unet", "focal", "0.5*ce+dice"])
def test_every_loss_falls_and_fits_the_mask(spec):
    """Free per-pixel logits fitted to a mask of blobs: the loss falls and the argmax becomes the mask."""
    mask = torch.zeros(1, 24, 24, dtype=torch.long)
    mask[0, 3:10, 3:10], mask[0, 12:20, 5:11], mask[0, 4:22, 14:20] = 1, 2, 1
    mask[0, 0] = IGNORE_INDEX
    loss = SegmentationLoss(spec, 3, class_weights=median_frequency_weights(pixel_counts(mask, 3)))
    logits = nn.Parameter(torch.zeros(1, 3, 24, 24))
    opt = torch.optim.Adam([logits], lr=0.1)
    weights = loss.pixel_weights(mask)
    values = []
    for _ in range(40):
        value = loss(logits, mask, weights)
        opt.zero_grad()
        value.backward()
        opt.step()
        values.append(float(value.detach()))
    valid = mask != IGNORE_INDEX
    assert values[-1] < 0.3 * values[0], values
    assert torch.equal(logits.argmax(1)[valid], mask[valid])


def test_the_trainer_weighs_the_loss_by_the_training_sets_classes(tmp_path):
    """--loss wce+dice through the Trainer: the class weights come from the training set's masks."""
    g = torch.Generator().manual_seed(0)
    n, s = 24, 16
    masks = torch.zeros(n, s, s, dtype=torch.uint8)
    images = torch.full((n, 3, s, s), 30, dtype=torch.uint8)
    for i in range(n):
        y, x, r = (int(v) for v in torch.randint(2, 12, (3,), generator=g))
        masks[i, y:y + r // 2 + 2, x:x + r // 2 + 2] = 1 + i % 2
        colour = [200, 60, 40] if i % 2 == 0 else [40, 60, 200]
        images[i][:, masks[i] > 0] = torch.tensor(colour, dtype=torch.uint8)[:, None]
    train = ImageDataset(["background", "red", "blue"], images=images, task="segmentation", targets={"mask": masks})

    class Pixelwise(nn.Module):
        num_classes = 3

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)

    torch.manual_seed(0)
    cfg = TrainConfig(epochs=3, batch_size=8, opt="adamw", lr=0.05, weight_decay=0.0, loss="wce+dice", flip=False,
                      pad=0)
    trainer = Trainer(Pixelwise(), train, train, config=cfg, out=None, log="quiet")
    torch.testing.assert_close(trainer.task.criterion.class_weights, dataset_class_weights(train))
    assert float(trainer.task.criterion.class_weights[0]) < 1 < float(trainer.task.criterion.class_weights[1])
    s = trainer.fit()
    losses = [h["train_loss"] for h in s["history"]]
    assert losses[-1] < losses[0] and s["history"][-1]["val_miou"] > s["history"][0]["val_miou"], s["history"]


# ---------------------------------------------------------------- metrics against scikit-learn


def test_segmentation_meter_agrees_with_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, jaccard_score

    k = 5
    g = torch.Generator().manual_seed(3)
    meter = SegmentationMeter(k, "cpu", IGNORE_INDEX)
    truths, preds = [], []
    for _ in range(3):  # three batches, summed in one confusion matrix
        mask = torch.randint(0, 3, (2, 10, 12), generator=g)  # classes 0..2 in the truth
        mask[torch.rand(2, 10, 12, generator=g) < 0.2] = IGNORE_INDEX
        pred = torch.randint(0, 4, (2, 10, 12), generator=g)  # class 3 predicted only; class 4 nowhere
        meter.update(F.one_hot(pred, k).permute(0, 3, 1, 2).float(), {"mask": mask}, None)
        valid = mask != IGNORE_INDEX
        truths.append(mask[valid])
        preds.append(pred[valid])
    y, p = torch.cat(truths).numpy(), torch.cat(preds).numpy()
    r = meter.compute()
    present = [0, 1, 2, 3]
    assert r["confusion"] == confusion_matrix(y, p, labels=list(range(k))).tolist()
    assert r["miou"] == pytest.approx(jaccard_score(y, p, labels=present, average="macro"))
    assert r["dice"] == pytest.approx(f1_score(y, p, labels=present, average="macro"))
    assert r["pixel_accuracy"] == pytest.approx(accuracy_score(y, p))
    assert r["pixel_error"] == pytest.approx(1 - accuracy_score(y, p))
    assert list(r["per_class_dice"].values()) == pytest.approx(f1_score(y, p, labels=present, average=None).tolist())
    assert list(r["per_class_iou"]) == ["0", "1", "2", "3"]
