"""Issue 13, the command line as a whole: every subcommand, given bad arguments, exits non-zero
with one paragraph on stderr and no Python traceback; ``--debug`` shows the traceback; a real
bug is reported as an internal error, not as the user's fault. Kind 11 (predict on a folder) too."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import torch
from test_robustness_helpers import ENV, assert_clean_error, run_cli, save_checkpoint, truncate, write_tree

from archzoo.cli import main as cli_main
from archzoo.cli.main import build_parser

pytestmark = pytest.mark.filterwarnings("ignore")


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


COMMANDS = _commands()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A checkpoint, a few good and bad images, a file and a folder to misuse."""
    root = tmp_path_factory.mktemp("cli")
    from PIL import Image

    Image.new("RGB", (20, 20), (10, 200, 10)).save(root / "img.png")
    Image.new("RGB", (40, 40), (10, 200, 10)).save(root / "cut.jpg")
    truncate(root / "cut.jpg", 0.5)
    (root / "text.png").write_text("not an image")
    (root / "file").write_text("x")
    os.symlink("loop.png", root / "loop.png")
    os.symlink("nowhere.png", root / "dangling.png")
    write_tree(root / "one", classes=("cat",), n=2)
    return {"CKPT": str(save_checkpoint(root / "ckpt.safetensors")), "IMG": str(root / "img.png"),
            "CUT": str(root / "cut.jpg"), "TEXT": str(root / "text.png"), "FILE": str(root / "file"),
            "DIR": str(root), "LOOP": str(root / "loop.png"), "DANGLING": str(root / "dangling.png"),
            "ONE": str(root / "one"), "MISSING": str(root / "missing.safetensors")}


# bad argument lists per command, with a word the message must hold; every command also gets the
# generic cases below (unknown option, missing argument values)
BAD = {
    "models": [(["--task", "nope"], "--task"), (["--trick", "no_such_trick"], "no_such_trick"),
               (["--family", "no_such_family"], "no_such_family")],
    "info": [(["no_such_model"], "no_such_model"), ([], "required")],
    "compare": [(["resnet20", "no_such_model", "--no-latency"], "no_such_model"), (["resnet20", "--repeats", "0"], "--repeats"),
                (["resnet20", "--threads", "x"], "--threads"), ([], "required")],
    "lineage": [(["--task", "x"], "--task"), (["--plot", "DIR"], "is a folder"), (["--plot", "FILE/x.png"], "is a file")],
    "train": [(["resnet20"], "--data"), (["resnet20", "--data", "MISSING"], "neither a built-in"),
              (["resnet20", "--data", "FILE"], "is a file"), (["resnet20", "--data", "ONE"], "only one class"),
              (["no_such_model", "--data", "digits"], "no_such_model"), (["--resume", "DIR"], "state.safetensors"),
              (["resnet20", "--data", "digits", "--out", "FILE"], "is a file"),
              (["resnet20", "--data", "digits", "--eval-every", "0"], "--eval-every"),
              (["resnet20", "--data", "digits", "--opt", "adam"], "--opt"),
              (["lenet5", "--data", "digits", "--image-size", "16"], "--image-size 32"),
              (["resnet20", "--data", "digits", "--init", "MISSING"], "does not exist"),
              (["resnet20", "--data", "digits", "--init", "TEXT"], "text.png"),
              (["resnet20", "--data", "digits", "--teacher", "CKPT", "--image-size", "8"], "classes")],
    "eval": [(["MISSING", "--data", "digits"], "does not exist"), (["DIR", "--data", "digits"], "is a folder"),
             (["TEXT", "--data", "digits"], "text.png"), (["CKPT", "--data", "MISSING"], "neither a built-in"),
             (["CKPT", "--data", "digits", "-b", "0"], "--batch-size"), (["CKPT", "--data", "ONE"], "cat"),
             (["CKPT", "--data", "digits", "--held-out", "2"], "--held-out"), (["CKPT"], "--data"),
             (["CKPT", "--data", "digits", "--confusion", "DIR"], "is a folder")],
    "predict": [(["CKPT", "DIR"], "is a folder"), (["CKPT", "MISSING"], "does not exist"), (["CKPT", "CUT"], "cut.jpg"),
                (["CKPT", "TEXT"], "text.png"), (["CKPT", "LOOP"], "loop.png"), (["CKPT", "DANGLING"], "nowhere.png"),
                (["CKPT", "IMG", "--topk", "-1"], "--topk"), (["MISSING", "IMG"], "does not exist"),
                (["TEXT", "IMG"], "text.png"), (["CKPT"], "required")],
    "cam": [(["CKPT", "DIR"], "is a folder"), (["CKPT", "CUT"], "cut.jpg"), (["CKPT", "IMG", "--out", "FILE"], "is a file"),
            (["CKPT", "IMG", "--class", "9"], "--class"), (["CKPT", "IMG", "--class", "dog"], "--class"),
            (["CKPT", "IMG", "--method", "x"], "--method"), (["no_such_model", "IMG"], "no_such_model"),
            (["CKPT", "IMG", "--layer", "no.such.layer", "--method", "gradcam", "--out", "DIR"], "no.such.layer")],
    "export": [(["CKPT"], "--out"), (["MISSING", "--out", "DIR/m.onnx"], "does not exist"),
               (["CKPT", "--out", "DIR"], "is a folder"), (["CKPT", "--out", "DIR/m.onnx", "--int8"], "--calib"),
               (["CKPT", "--out", "DIR/m.onnx", "--int8", "--calib", "FILE"], "not a folder")],
    "serve": [(["MISSING"], "does not exist"), (["DIR"], "is a folder"), (["TEXT"], "text.png"),
              (["no_such_model"], "no_such_model"), (["CKPT", "--port", "70000"], "--port"),
              (["CKPT", "--runtime", "tf"], "--runtime"), (["CKPT", "--max-upload-mb", "0"], "--max-upload-mb"),
              (["CKPT", "--queue", "x"], "--queue"), ([], "required")],
    "nca": [([], "--out"), (["--out", "FILE"], "is a file"), (["--target", "MISSING", "--out", "DIR/nca"], "missing"),
            (["--target", "TEXT", "--out", "DIR/nca"], "text.png"), (["--target", "nope", "--out", "DIR/nca"], "nope"),
            (["--steps", "0", "--out", "DIR/nca"], "--steps"), (["--ca-steps", "9", "3", "--out", "DIR/nca"], "--ca-steps")],
    "scale": [(["no_such_model", "--phi", "1"], "no_such_model"), (["efficientnet_b0"], "--phi"),
              (["efficientnet_b0", "--phi", "-1"], "--phi"), (["resnet50", "--phi", "1"], "block-string"),
              (["efficientnet_b0", "--phi", "1", "--alpha", "0"], "alpha"), (["efficientnet_b0", "--preset", "x"], "--preset")],
    "search": [([], "--out"), (["--out", "FILE"], "is a file"), (["--out", "DIR/s", "--strategy", "x"], "--strategy"),
               (["--out", "DIR/s", "--trials", "0"], "--trials"), (["--out", "DIR/s", "--data", "MISSING"], "missing"),
               (["--out", "DIR/s", "--storage", "bogus://x"], "--storage"),
               (["--out", "DIR/s", "--space", "blocks", "--image-size", "8"], "--image-size"),
               (["--out", "DIR/s", "--report"], "no search store")],
    "stylize": [(["chelsea", "--out", "DIR/o.png"], "CONTENT and STYLE"), (["MISSING", "ihc", "--out", "DIR/o.png"], "CONTENT"),
                (["TEXT", "ihc", "--out", "DIR/o.png"], "cannot read"), (["chelsea", "ihc", "--out", "DIR/o.png", "--steps", "0"], "--steps"),
                (["chelsea", "ihc", "--out", "DIR/o.png", "--backbone", "nope"], "--backbone"),
                (["chelsea", "--model", "MISSING", "--out", "DIR/o.png"], "--model"),
                (["chelsea", "ihc", "--out", "FILE/x.png"], "is a file"),
                (["chelsea", "ihc", "--out", "DIR/o.png", "--features-weights", "MISSING"], "--features-weights")],
    "demo": [(["--epochs", "0"], "--epochs"), (["--out", "FILE"], "is a file"), (["--model", "no_such_model", "--out", "DIR/demo"], "no_such_model"),
             (["--threads", "-1"], "--threads")],
}
GENERIC = [(["--no-such-option"], "error")]


def _cases():
    for cmd in COMMANDS:
        for argv, needle in BAD.get(cmd, []) + GENERIC:
            yield pytest.param(cmd, argv, needle, id=f"{cmd}:{' '.join(argv)}")


def test_every_command_has_a_table_of_bad_arguments():
    missing = [c for c in COMMANDS if c not in BAD]
    assert not missing, f"add bad-argument cases for {missing}"


@pytest.mark.parametrize("cmd,argv,needle", list(_cases()))
def test_bad_arguments_give_one_paragraph_and_no_traceback(cmd, argv, needle, files, capsys):
    def fill(a: str) -> str:
        head, _, rest = a.partition("/")
        return files[head] + ("/" + rest if rest else "") if head in files else a

    rc, out, err = run_cli([cmd, *map(fill, argv)], capsys)
    assert_clean_error(rc, err, needle)


def test_a_bug_is_an_internal_error_and_debug_shows_its_traceback(files, capsys, monkeypatch):
    from archzoo.cli import predict

    def broken(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(predict, "predict_files", broken)
    rc, _, err = run_cli(["predict", files["CKPT"], files["IMG"]], capsys)
    assert rc == 1 and "internal error (ZeroDivisionError)" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(ZeroDivisionError):
        cli_main.main(["--debug", "predict", files["CKPT"], files["IMG"]])
    monkeypatch.setenv("ARCHZOO_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli_main.main(["predict", files["CKPT"], files["IMG"]])
    # a KeyError of a bare key is a bug too; one that carries a sentence (an unknown name) is the user's
    monkeypatch.delenv("ARCHZOO_DEBUG")
    monkeypatch.setattr(predict, "predict_files", lambda *a, **k: {}["epoch"])
    rc, _, err = run_cli(["predict", files["CKPT"], files["IMG"]], capsys)
    assert rc == 1 and "internal error (KeyError)" in err


def test_predict_on_a_folder_says_it_is_a_folder(files, capsys):
    rc, _, err = run_cli(["predict", files["CKPT"], files["DIR"]], capsys)
    assert_clean_error(rc, err, "is a folder")
    assert "does not exist" not in err


def test_help_and_version_still_exit_zero(capsys):
    for argv in (["--help"], ["--version"], ["train", "--help"], []):
        rc, out, _ = run_cli(argv, capsys)
        assert rc == 0 and out


# --------------------------------------------------------------------------- real processes


def _archzoo(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archzoo", *args], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=300)


def test_real_processes_end_without_traceback(files, tmp_path):
    small = write_tree(tmp_path / "t16", n=2, size=16)
    r = _archzoo("train", "lenet5", "--data", str(small), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--image-size 32" in r.stderr
    r = _archzoo("predict", files["CKPT"], files["DIR"])
    assert r.returncode == 2 and "Traceback" not in r.stderr and "is a folder" in r.stderr
    r = _archzoo("--debug", "predict", files["CKPT"], files["DIR"])
    assert r.returncode == 1 and "Traceback (most recent call last)" in r.stderr and "UserError" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_real_process_device_cuda_without_cuda():
    r = _archzoo("eval", "resnet20.cifar10", "--data", "digits", "--device", "cuda")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no CUDA device" in r.stderr
