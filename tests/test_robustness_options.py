"""Issue 13, kinds 7 and 8: option values out of range and output folders that cannot be used.
Every numeric option has one declared range (``archzoo.validate.RANGES``); the command line, the
training config and the Python API refuse the same values with a message naming the option."""

from __future__ import annotations

import argparse
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_robustness_helpers import FAST, assert_clean_error, run_cli, save_checkpoint, write_tree

import archzoo
from archzoo.cli.main import build_parser
from archzoo.engine.config import TrainConfig
from archzoo.validate import RANGES, check_writable_dir, resolve_device

pytestmark = pytest.mark.filterwarnings("ignore")
PARSER = build_parser()


def _train_flags() -> dict[str, str]:
    """``option name -> --flag`` of every numeric option of ``archzoo train``."""
    sub = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return {a.dest: a.option_strings[-1] for a in sub._actions if a.dest in RANGES and a.option_strings}


FLAGS = _train_flags()
RECIPE = {f for f in FLAGS if f in TrainConfig.__dataclass_fields__}
NUMBER = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from([0, 1, -1, 0.5, 1.0, 1e-9, 2, 1024, 1025]))


def test_every_numeric_option_of_train_declares_its_range():
    sub = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    typed = {a.dest for a in sub._actions if a.type in (int, float)}
    assert not typed, f"options without a declared range: {typed}"
    assert RECIPE == {f for f in TrainConfig.__dataclass_fields__ if f in RANGES}


def _cli_accepts(flag: str, text: str) -> bool:
    try:
        PARSER.parse_args(["train", "resnet20", flag, text])
        return True
    except SystemExit:
        return False


def _api_accepts(name: str, value) -> bool:
    try:
        if name in RECIPE:
            TrainConfig(**{name: [value] if name == "milestones" else value})
        else:
            archzoo.engine.api._check_arguments(**{**dict(val_split=0.1, image_size=None, train_limit=None,
                                                         val_limit=None, log="quiet", device="cpu", model_kwargs=None),
                                                   **({name: value} if name not in ("drop_rate", "drop_path_rate")
                                                      else {"model_kwargs": {name: value}})})
        return True
    except ValueError:
        return False


@settings(max_examples=120, deadline=None)
@given(name=st.sampled_from(sorted(FLAGS)), value=NUMBER)
def test_cli_and_api_accept_the_same_values(name, value):
    r = RANGES[name]
    if r.kind is int and isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            assert not _api_accepts(name, value)
            return
        value = int(value)
    expected = r.contains(value)
    assert _api_accepts(name, value) == expected
    assert _cli_accepts(FLAGS[name], repr(value) if isinstance(value, float) else str(value)) == expected


@pytest.mark.parametrize("argv,needle", [
    (["--eval-every", "0"], "--eval-every"), (["--image-size", "0"], "--image-size"), (["--pad", "-1"], "--pad"),
    (["--label-smoothing", "2"], "--label-smoothing"), (["--train-limit", "-5"], "--train-limit"),
    (["--drop-path-rate", "-1"], "--drop-path-rate"), (["--mixup", "-1"], "--mixup"), (["--device", "tpu"], "--device"),
    (["--lr", "nan"], "--lr"), (["--epochs", "1.5"], "--epochs"), (["--val-split", "1"], "--val-split"),
    (["--ema", "1"], "--ema"), (["--milestones", "3", "-1"], "--milestones"), (["--workers", "-2"], "--workers"),
    (["-b", "0"], "--batch-size"), (["--seed", "-3"], "--seed"), (["--warmup-epochs", "inf"], "--warmup-epochs"),
])
def test_the_named_bad_train_options(argv, needle, capsys):
    rc, _, err = run_cli(["train", "resnet20", "--data", "digits", *argv], capsys)
    assert_clean_error(rc, err, needle)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(train_limit=-5), "train_limit"), (dict(val_limit=0), "val_limit"), (dict(image_size=0), "image_size"),
    (dict(val_split=-0.1), "val_split"), (dict(device="tpu"), "device"), (dict(model_kwargs={"drop_path_rate": -1}),
                                                                          "drop_path_rate"),
    (dict(eval_every=0), "eval_every"), (dict(mixup=-1), "mixup"), (dict(label_smoothing=2), "label_smoothing"),
    (dict(pad=-1), "pad"), (dict(log="loud"), "log"),
])
def test_the_python_api_refuses_the_same(kwargs, needle):
    opts = {**FAST, **kwargs}
    with pytest.raises(ValueError, match=needle):
        archzoo.train("resnet20", "digits", **opts)


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cpu:", "", "cuda 0"])
def test_malformed_devices(spec):
    with pytest.raises(ValueError, match="must be cpu, cuda, cuda:N or mps"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("cmd", ["train", "eval", "predict", "cam", "demo"])
def test_cuda_without_cuda(cmd, tmp_path, capsys):
    argv = {"train": ["train", "resnet20", "--data", "digits"], "eval": ["eval", "x", "--data", "digits"],
            "predict": ["predict", "x", "y"], "cam": ["cam", "x", "y"], "demo": ["demo"]}[cmd]
    rc, _, err = run_cli([*argv, "--device", "cuda"], capsys)
    assert_clean_error(rc, err, "--device", "no CUDA device")
    with pytest.raises(ValueError, match="no CUDA device"):
        archzoo.train("resnet20", "digits", device="cuda:0", **FAST)


@pytest.mark.parametrize("argv,needle", [
    (["predict", "CKPT", "IMG", "--topk", "-1"], "--topk"), (["predict", "CKPT", "IMG", "--topk", "0"], "--topk"),
    (["eval", "CKPT", "--data", "digits", "-b", "0"], "--batch-size"),
    (["eval", "CKPT", "--data", "digits", "--held-out", "1"], "--held-out"),
    (["eval", "CKPT", "--data", "digits", "--workers", "-1"], "--workers"),
    (["demo", "--epochs", "0"], "--epochs"), (["demo", "--threads", "0"], "--threads"),
    (["compare", "resnet20", "--repeats", "0"], "--repeats"), (["compare", "resnet20", "--threads", "-4"], "--threads"),
])
def test_other_commands_options(argv, needle, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "c.safetensors")
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(img)
    argv = [str(ckpt) if a == "CKPT" else str(img) if a == "IMG" else a for a in argv]
    rc, _, err = run_cli(argv, capsys)
    assert_clean_error(rc, err, needle)


def test_the_functions_behind_the_commands_check_too(tmp_path):
    from archzoo.cli.predict import predict_files
    from archzoo.engine.evaluate import evaluate_model

    model = archzoo.create_model("resnet20", num_classes=2)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(img)
    with pytest.raises(ValueError, match="topk"):
        predict_files(model, {}, [str(img)], topk=-1)
    from archzoo.data import load_dataset

    ds = load_dataset("digits", val_split=0).train
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_model(model, ds, input_size=16, mean=[0.5], std=[0.5], batch_size=0)


# --------------------------------------------------------------------------- 8. output folders


def _immutable(path: Path) -> bool:
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


@pytest.fixture
def unusable(tmp_path):
    """Output folders that cannot be used: a file, below a file, read-only (if not root), immutable
    (where chattr works)."""
    (tmp_path / "file").write_text("x")
    cases = {"a file": (tmp_path / "file", "is a file"), "below a file": (tmp_path / "file" / "sub", "is a file")}
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases["read-only"] = (ro / "run", "not writable")
    imm = tmp_path / "imm"
    imm.mkdir()
    immutable = _immutable(imm)
    if immutable:
        cases["immutable"] = (imm, "not writable")
        cases["below immutable"] = (imm / "run", "not writable")
    yield cases
    if immutable:
        subprocess.run(["chattr", "-i", str(imm)])
    if (tmp_path / "ro").exists():
        (tmp_path / "ro").chmod(0o755)


def test_unusable_output_folders_are_refused_before_training(unusable, tmp_path, capsys, monkeypatch):
    from archzoo.engine.trainer import Trainer

    def never(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(Trainer, "fit", never)
    for name, (out, needle) in unusable.items():
        with pytest.raises(ValueError, match=needle):
            check_writable_dir(out)
        rc, _, err = run_cli(["train", "resnet20", "--data", "digits", "--image-size", "8", "--out", out], capsys)
        assert_clean_error(rc, err, "--out", needle)
        with pytest.raises(ValueError, match=needle):
            archzoo.train("resnet20", "digits", out=out, **FAST)


def test_unusable_outputs_of_other_commands(unusable, tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "c.safetensors")
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(img)
    for name, (out, needle) in unusable.items():
        for argv in (["cam", ckpt, img, "--out", out], ["demo", "--out", out, "--epochs", "1"],
                     ["eval", ckpt, "--data", "digits", "--confusion", Path(out) / "cm.png"],
                     ["lineage", "--plot", Path(out) / "tree.png"]):
            rc, _, err = run_cli(argv, capsys)
            assert_clean_error(rc, err, needle)
    for argv, needle in ((["eval", ckpt, "--data", "digits", "--confusion", tmp_path], "is a folder"),
                         (["lineage", "--plot", tmp_path], "is a folder")):
        rc, _, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, needle)


def test_the_write_check_leaves_nothing_behind(tmp_path):
    out = tmp_path / "new" / "deeper" / "run"
    assert check_writable_dir(out) == out
    assert not (tmp_path / "new").exists()
    (tmp_path / "there").mkdir()
    check_writable_dir(tmp_path / "there")
    assert list((tmp_path / "there").iterdir()) == []


def test_a_fine_out_folder_still_trains(tmp_path):
    tree = write_tree(tmp_path / "t", n=3)
    s = archzoo.train("resnet20", str(tree), out=tmp_path / "runs" / "r", **FAST)
    assert (tmp_path / "runs" / "r" / "summary.json").is_file() and s["epochs"] == 1
