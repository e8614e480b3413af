"""The training engine through its Python API: schedules, parameter groups, freezing, mixing,
EMA, auxiliary losses, exact resumption, NaN handling and the run folder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.checkpoint import read_tensors
from archzoo.data import load_dataset
from archzoo.engine import ClassificationTask, TrainConfig, Trainer, TrainingDiverged, train
from archzoo.engine.task import Distilled
from archzoo.engine.ema import ModelEMA
from archzoo.engine.mix import mix_batch
from archzoo.engine.optim import Schedule, param_groups
from archzoo.engine.state import rng_state, set_rng_state
from archzoo.models.base import AuxLogits

# tiny runs: the 8x8 digits, a few hundred images, ResNet-20
TINY = dict(image_size=8, train_limit=256, val_limit=64, batch_size=32, log="quiet")


@pytest.fixture(scope="module")
def digits8():
    return load_dataset("digits", image_size=8, val_split=0.1)


def _tiny_trainer(splits, out=None, **cfg):
    model = archzoo.create_model("resnet20", num_classes=10, in_chans=1)
    train_ds = splits.train.subset(torch.arange(0, len(splits.train), 5))
    cfg = TrainConfig(**{"batch_size": 32, **cfg})
    return Trainer(model, train_ds, splits.val, config=cfg, out=out, log="quiet")


# --- schedules and optimizer ----------------------------------------------------------------------

def test_schedules():
    cfg = TrainConfig(epochs=10, warmup_epochs=2, sched="cosine", min_lr_ratio=0.1).resolved()
    s = Schedule(cfg, steps_per_epoch=10)
    assert [s.factor(i) for i in range(3)] == pytest.approx([0.05, 0.10, 0.15])
    assert s.factor(19) == pytest.approx(1.0)
    assert s.factor(20) == pytest.approx(1.0)  # cosine starts at the peak after warm-up
    assert s.factor(60) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert s.factor(99) > 0.1 and s.factor(99) == pytest.approx(0.1, abs=1e-3)
    step = Schedule(TrainConfig(epochs=10, sched="step").resolved(), 10)  # milestones 5 and 7.5 epochs
    assert [step.factor(i) for i in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    one = Schedule(TrainConfig(epochs=10, sched="onecycle").resolved(), 10)
    f = [one.factor(i) for i in range(100)]
    assert f[0] == pytest.approx(1 / 25) and max(f) == pytest.approx(1.0, abs=1e-3) and f.index(max(f)) in (29, 30)
    assert f[-1] < 1e-3 and all(a <= b for a, b in zip(f[:30], f[1:30]))


def test_default_lr_follows_linear_scaling():
    assert TrainConfig(batch_size=512).resolved().lr == pytest.approx(0.4)
    assert TrainConfig(batch_size=256, opt="adamw").resolved().lr == pytest.approx(5e-4)
    assert TrainConfig(opt="adamw").resolved().weight_decay == 0.05


def test_recipe_rejects_unknown_choices_by_name():
    with pytest.raises(ValueError, match="compile_mode must be one of default, reduce-overhead"):
        TrainConfig(compile_mode="fastest")
    with pytest.raises(ValueError, match="sched must be one of"):
        TrainConfig(sched="linear")
    assert TrainConfig.from_dict({"epochs": 3}).compile_mode == "default"  # recipes saved before the option


def test_no_weight_decay_on_norms_and_biases_and_backbone_lr_scale():
    model = archzoo.create_model("resnet20")
    groups = param_groups(model, 5e-4, backbone_lr_scale=0.1)
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_id[id(p)]
        assert g["weight_decay"] == (5e-4 if p.ndim > 1 else 0.0), name
        assert g["lr_scale"] == (1.0 if name.startswith("head.fc.") else 0.1), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_freeze_backbone_trains_only_the_classifier(digits8):
    t = _tiny_trainer(digits8, epochs=1, freeze="backbone", lr=0.05)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit()
    after = t.model.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["head.fc.bias", "head.fc.weight"]  # norm statistics of the frozen body included
    assert t.trainable == 64 * 10 + 10


# --- task pieces ----------------------------------------------------------------------------------

def test_aux_logits_loss_is_main_plus_weighted_aux():
    task = ClassificationTask(5, aux_weight=0.3)
    g = torch.Generator().manual_seed(0)
    main, a1, a2 = (torch.randn(4, 5, generator=g) for _ in range(3))
    y = torch.tensor([0, 1, 2, 3])
    ce = nn.functional.cross_entropy
    loss = task.loss(AuxLogits(main, (a1, a2)), y)
    torch.testing.assert_close(loss, ce(main, y) + 0.3 * (ce(a1, y) + ce(a2, y)))
    meter = task.meter(torch.device("cpu"), train=True)
    meter.update(AuxLogits(main, (a1, a2)), y, loss)  # metrics use the main logits
    assert int(meter.sums["correct"]) == int((main.argmax(1) == y).sum())


@pytest.mark.parametrize("mixup,cutmix", [(0.2, 0.0), (0.0, 1.0), (0.2, 1.0)])
def test_mixing_gives_soft_targets_that_sum_to_one(mixup, cutmix):
    torch.manual_seed(0)
    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).view(4, 3, 8, 8)  # every pixel value unique
    y = torch.tensor([0, 1, 2, 3])
    xm, t = mix_batch(x, y, 5, mixup, cutmix, smoothing=0.1)
    assert xm.shape == x.shape and t.shape == (4, 5)
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    assert not torch.equal(xm, x)
    lam = (float(t[0, 0]) - 0.1 / 5) / 0.9  # image 0 is mixed with image 3 (the reversed batch)
    if cutmix == 0.0:
        torch.testing.assert_close(xm, x * lam + x.flip(0) * (1 - lam))
    elif mixup == 0.0:
        assert float((xm[0] == x[0]).float().mean()) == pytest.approx(lam, abs=1e-6)  # the box's share of the area


def test_ema_follows_the_weights():
    model = nn.Linear(3, 2)
    ema = ModelEMA(model, decay=0.5)
    w0 = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # decay ramps: min(0.5, 2/11)
    d = 2 / 11
    torch.testing.assert_close(ema.module.weight, d * w0 + (1 - d) * model.weight)


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = rng_state(torch.device("cpu"))
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state, torch.device("cpu"))
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


# --- whole runs -----------------------------------------------------------------------------------

def test_run_folder_and_checkpoint_rebuild(tmp_path):
    out = tmp_path / "run"
    s = train("resnet20", "digits", epochs=2, out=out, seed=3, **TINY)
    for name in ("last.safetensors", "best.safetensors", "state.safetensors", "metrics.csv", "curves.png",
                 "confusion.png", "predictions.png", "summary.json"):
        assert (out / name).is_file(), name
    assert s["fast_path"] and s["val_count"] == 64 and len(s["history"]) == 2
    assert (out / "metrics.csv").read_text().count("\n") == 3
    model, meta = archzoo.load_model(out / "last.safetensors")
    assert meta["model"] == "resnet20" and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["input_size"] == [1, 8, 8] and len(meta["mean"]) == 1 and meta["epoch"] == 2
    # the rebuilt model, run by hand (plain torch: scale to [0, 1], normalise, argmax) on the 64
    # validation images, scores what the run recorded in its summary and in the checkpoint
    from archzoo.engine.evaluate import evaluate_model

    val = load_dataset("digits", image_size=8, val_split=0.1, seed=3).val
    val = val.subset(torch.sort(torch.randperm(len(val), generator=torch.Generator().manual_seed(4))[:64]).values)
    mean, std = torch.tensor(meta["mean"]).view(1, -1, 1, 1), torch.tensor(meta["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        logits = model.eval()((val.images.float() / 255 - mean) / std)
    by_hand = (logits.argmax(1) == val.labels).float().mean().item()
    assert s["val_accuracy"] == pytest.approx(by_hand) and meta["metrics"]["val_accuracy"] == pytest.approx(by_hand)
    m = evaluate_model(model, val, input_size=8, mean=meta["mean"], std=meta["std"], class_names=meta["class_names"])
    assert m["accuracy"] == pytest.approx(by_hand) and m["count"] == 64


def test_distillation_loss_is_weighted_hard_loss_plus_tempered_kl():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    task = ClassificationTask(5, label_smoothing=0.1, distill=0.3, temperature=2.0)
    ce = nn.functional.cross_entropy(student, y, label_smoothing=0.1)
    p_t = torch.softmax(teacher / 2, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(student / 2, -1))).sum(-1).mean()
    torch.testing.assert_close(task.loss(student, Distilled(y, teacher)), 0.7 * ce + 0.3 * 4 * kl)
    torch.testing.assert_close(task.loss(student, Distilled(y, student.clone())), 0.7 * ce)  # agreeing: no soft loss
    # the teacher sees the training batch; the meter counts against the labels
    task.teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x = torch.randn(6, 3, 2, 2, generator=g)
    _, target = task.train_batch(x, y)
    assert isinstance(target, Distilled) and torch.equal(target.targets, y)
    torch.testing.assert_close(target.teacher_logits, task.teacher(x))
    meter = task.meter(torch.device("cpu"), train=True)
    meter.update(student, target, task.loss(student, target))
    assert meter.compute()["accuracy"] == pytest.approx((student.argmax(-1) == y).float().mean().item())


def test_distillation_run_resumes_with_its_teacher_and_refuses_other_classes(tmp_path):
    teacher_run = tmp_path / "teacher"
    train("resnet20", "digits", epochs=1, out=teacher_run, **TINY)
    student = tmp_path / "student"
    s = train("resnet20", "digits", epochs=1, out=student, teacher=teacher_run / "last.safetensors", **TINY)
    assert s["recipe"]["distill"] == 0.5 and s["recipe"]["distill_temperature"] == 4.0
    _, meta = archzoo.load_model(student / "last.safetensors")
    assert meta["run"]["teacher"] == str(teacher_run / "last.safetensors")
    again = train(resume=student, epochs=2, log="quiet")
    assert len(again["history"]) == 2 and again["recipe"]["distill"] == 0.5
    with pytest.raises(ValueError, match="needs a teacher"):
        train("resnet20", "digits", epochs=1, distill=0.5, **TINY)
    stranger = tmp_path / "stranger.safetensors"
    archzoo.save_model(archzoo.create_model("resnet20", in_chans=1), stranger, class_names=list("abcdefghij"))
    with pytest.raises(ValueError, match="was trained on classes"):
        train("resnet20", "digits", epochs=1, teacher=stranger, **TINY)


def test_compile_also_compiles_the_teacher_with_the_students_mode(tmp_path, monkeypatch):
    """The teacher runs every step; left eager it would cost the launches compiling the student saves."""
    compiled = []

    def fake_compile(module, mode=None, **kw):  # records the call; inductor itself is too slow for a unit test
        compiled.append((module, mode))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    teacher_file = tmp_path / "teacher.safetensors"
    names = load_dataset("digits").train.class_names
    teacher = archzoo.create_model("resnet20", in_chans=1, num_classes=10)
    marker = torch.full_like(teacher.get_classifier().bias, 7.0)  # tells the teacher apart from the student
    with torch.no_grad():
        teacher.get_classifier().bias.copy_(marker)
    archzoo.save_model(teacher, teacher_file, class_names=names)
    train("resnet20", "digits", epochs=1, teacher=teacher_file, compile=True, compile_mode="reduce-overhead",
          amp=False, channels_last=False, **TINY)
    teachers = [m for m, _ in compiled if torch.equal(m.get_classifier().bias, marker)]
    assert len(teachers) == 1 and not teachers[0].training
    assert len(compiled) > 1 and {mode for _, mode in compiled} == {"reduce-overhead"}  # the student's too


def test_learns_digits(digits8):
    torch.manual_seed(0)
    s = train("resnet20", digits8, epochs=4, batch_size=32, lr=0.05, opt="adamw", flip=False, pad=1, log="quiet")
    assert s["val_accuracy"] > 0.6  # chance is 0.1


def test_resume_in_process_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    from archzoo.engine.progress import RunLog

    kw = dict(TINY, opt="adamw", ema=0.9, mixup=0.2, cutmix=1.0, label_smoothing=0.1, sched="onecycle",
              deterministic=True, seed=5)
    train("resnet20", "digits", epochs=3, out=tmp_path / "a", **kw)

    class Crash(Exception):
        pass

    real_write = RunLog.write

    def write_then_crash(self, history):  # stop right after the first epoch's checkpoint
        real_write(self, history)
        raise Crash

    b = tmp_path / "b"
    monkeypatch.setattr(RunLog, "write", write_then_crash)
    with pytest.raises(Crash):
        train("resnet20", "digits", epochs=3, out=b, **kw)
    monkeypatch.undo()
    assert read_tensors(b / "state.safetensors")[1]["epoch"] == 1
    s = train(resume=b, log="quiet")  # model, data and recipe come from the run folder
    a, _ = read_tensors(tmp_path / "a" / "state.safetensors")
    r, meta = read_tensors(b / "state.safetensors")
    assert meta["epoch"] == 3 and len(s["history"]) == 3
    assert sorted(a) == sorted(r)  # model, EMA, optimizer, RNG states
    assert all(torch.equal(a[k], r[k]) for k in a), [k for k in a if not torch.equal(a[k], r[k])][:5]


def test_resume_refuses_data_that_changed(digits8, tmp_path):
    _tiny_trainer(digits8, out=tmp_path, epochs=1).fit()
    model = archzoo.create_model("resnet20", num_classes=10, in_chans=1)
    other = Trainer(model, digits8.train.subset(torch.arange(0, len(digits8.train), 4)), digits8.val,
                    config=TrainConfig(epochs=2, batch_size=32), out=tmp_path, log="quiet")
    with pytest.raises(ValueError, match="training data changed"):
        other.fit(resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(digits8, tmp_path):
    t = _tiny_trainer(digits8, out=tmp_path, epochs=3)
    steps, calls = len(t.train_batches), {"n": 0}

    def poison(module, inputs, output):
        if module.training:
            calls["n"] += 1
            if calls["n"] > steps:  # from the second epoch on
                return output * float("nan")
        return output

    t.model.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged) as e:
        t.fit()
    msg = str(e.value)
    assert "nan" in msg and "epoch 2" in msg and "last good checkpoint (epoch 1)" in msg
    model, meta = archzoo.load_model(tmp_path / "last.safetensors")
    assert meta["epoch"] == 1 and all(torch.isfinite(v).all() for v in model.state_dict().values())
    _, state = read_tensors(tmp_path / "state.safetensors")
    assert state["epoch"] == 1
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 2  # header + epoch 1


def test_dataloader_path_and_refusing_to_overwrite(digits8, tmp_path):
    s = train("resnet20", digits8, epochs=1, out=tmp_path, fast_path=False, workers=0, batch_size=64,
              train_limit=128, log="quiet")
    assert not s["fast_path"] and s["val_count"] == len(digits8.val)
    with pytest.raises(ValueError, match="already holds a run"):
        train("resnet20", digits8, epochs=1, out=tmp_path, log="quiet")
