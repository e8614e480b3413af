"""Issue 13, kinds 1-5 and 9: the data a user points archzoo at. Images below the model's
smallest input, pixels that fail to decode, symbolic-link loops, names that are not UTF-8, one
class, and resuming with other data: each refused before training with an error naming the file,
folder or option, or (``--skip-bad``) skipped and reported, never silently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_robustness_helpers import ENV, FAST, assert_clean_error, run_cli, save_checkpoint, truncate, write_tree

import archzoo
from archzoo.data import load_dataset
from archzoo.data.folder import BadImageError
from archzoo.registry import model_card
from archzoo.validate import UserError

pytestmark = pytest.mark.filterwarnings("ignore")


# --------------------------------------------------------------------------- 1. smaller than the model allows


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=st.sampled_from(["lenet5", "alexnet", "vgg11", "squeezenet1_1", "resnet20", "googlenet"]),
       data=st.data())
def test_images_below_the_smallest_input_are_refused_before_training(tmp_path_factory, model, data):
    low = model_card(model).min_input_size[-1]
    size = data.draw(st.integers(2, low - 1)) if low > 2 else None
    if size is None:
        return
    tree = write_tree(tmp_path_factory.mktemp("small"), n=2, size=size)
    with pytest.raises(ValueError, match=f"{model} needs inputs of at least {low}x{low}.*--image-size {low}"):
        archzoo.train(model, str(tree), **FAST)
    # --image-size below the minimum is refused as well, whatever the images' size
    with pytest.raises(ValueError, match=f"at least {low}x{low}"):
        archzoo.train(model, str(tree), image_size=size, **FAST)


def test_lenet5_on_16px_images_through_the_cli(tmp_path, capsys):
    tree = write_tree(tmp_path / "t16", n=2, size=16)
    rc, _, err = run_cli(["train", "lenet5", "--data", tree, "--epochs", "1", "--out", tmp_path / "o", "--quiet"], capsys)
    assert_clean_error(rc, err, "lenet5", "32x32", "--image-size 32")
    assert not (tmp_path / "o").exists()  # refused before anything was written
    rc, _, err = run_cli(["train", "lenet5", "--data", "digits", "--image-size", "16", "--out", tmp_path / "o"], capsys)
    assert_clean_error(rc, err, "--image-size 32")


def test_checkpoints_claiming_a_too_small_input_are_refused(tmp_path, capsys):
    path = save_checkpoint(tmp_path / "lenet.safetensors", model="lenet5", size=32)
    from test_robustness_checkpoint import _rewrite

    bad = _rewrite(path, tmp_path / "small.safetensors", {"input_size": [1, 16, 16]})
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (40, 40)).save(img)
    for argv in (["eval", bad, "--data", "digits"], ["predict", bad, img], ["cam", bad, img, "--out", tmp_path]):
        rc, _, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, "input_size", "32x32")


# --------------------------------------------------------------------------- 2. pixels that fail to decode

CORRUPTIONS = ("truncated jpeg", "truncated png", "garbage", "empty")


def _mixed_tree(root: Path, kind: str, position: int) -> Path:
    """Two classes of mixed-size images (so the dataset is decoded lazily) with one bad file,
    the ``position``-th of class ``a``; returns the bad file."""
    import numpy as np
    from PIL import Image

    write_tree(root, classes=("a",), n=6, sizes=[20, 24, 28], fmt="jpg")
    write_tree(root, classes=("b",), n=3, sizes=[22], fmt="png", seed=1)
    victim = sorted((root / "a").iterdir())[position]
    if kind == "truncated jpeg":
        return truncate(victim, 0.5)
    victim.unlink()
    bad = victim.with_suffix(".png")
    if kind == "truncated png":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(bad)
        truncate(bad, 0.6)
    elif kind == "garbage":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    else:
        bad.write_bytes(b"")
    return bad


@pytest.mark.parametrize("kind", CORRUPTIONS)
@pytest.mark.parametrize("position", [0, 4])  # the first file (in-memory pass) or a later one (verification pass)
def test_bad_pixels_are_found_when_the_data_is_loaded(tmp_path, kind, position):
    bad = _mixed_tree(tmp_path / "t", kind, position)
    with pytest.raises(BadImageError) as e:
        load_dataset(tmp_path / "t")
    assert e.value.path == str(bad) and str(bad) in str(e.value)
    splits = load_dataset(tmp_path / "t", skip_bad=True)
    assert [p for p, _ in splits.bad_files] == [str(bad)]
    files = splits.train.files + splits.val.files
    assert str(bad) not in files and len(files) == 6 + 3 - 1
    for f in files:  # every kept file decodes
        splits.train.decode(f)


def test_skip_bad_skips_and_reports_in_train_and_eval(tmp_path, capsys):
    bad = _mixed_tree(tmp_path / "t", "truncated jpeg", 3)
    summary = archzoo.train("resnet20", str(tmp_path / "t"), out=tmp_path / "run", skip_bad=True, val_split=0.3,
                            image_size=16, **FAST)
    assert summary["skipped_files"] == [{"file": str(bad), "reason": summary["skipped_files"][0]["reason"]}]
    assert str(bad) in (tmp_path / "run" / "skipped_files.txt").read_text()
    assert summary["train_count"] + summary["val_count"] == 8
    _, meta = archzoo.load_model(tmp_path / "run" / "last.safetensors")
    assert meta["run"]["skipped_files"] == 1
    # without --skip-bad the CLI names the file, before any epoch
    rc, _, err = run_cli(["train", "resnet20", "--data", tmp_path / "t", "--out", tmp_path / "run2", "--epochs", "1"],
                         capsys)
    assert_clean_error(rc, err, str(bad), "truncated")
    assert not (tmp_path / "run2").exists()
    # eval: named without --skip-bad, skipped and listed with it
    ckpt = tmp_path / "run" / "last.safetensors"
    rc, _, err = run_cli(["eval", ckpt, "--data", tmp_path / "t", "--workers", "1"], capsys)
    assert_clean_error(rc, err, str(bad))
    rc, out, _ = run_cli(["eval", ckpt, "--data", tmp_path / "t", "--skip-bad", "--json", "--workers", "1"], capsys)
    r = json.loads(out)
    assert rc == 0 and r["count"] == 8 and r["skipped_files"] == 1 and r["skipped"][0]["file"] == str(bad)
    rc, out, _ = run_cli(["eval", ckpt, "--data", tmp_path / "t", "--skip-bad"], capsys)
    assert rc == 0 and "skipped 1 unreadable files" in out and str(bad) in out


# --------------------------------------------------------------------------- 3. symbolic-link loops

LINKS = {
    "file to itself": lambda root: os.symlink("self.png", root / "a" / "self.png"),
    "folder to ..": lambda root: os.symlink("..", root / "a" / "up"),
    "folder to .": lambda root: os.symlink(".", root / "a" / "here"),
    "folder to the tree": lambda root: os.symlink(root, root / "b" / "sub" / "tree", target_is_directory=True),
    "mutual folders": lambda root: (os.symlink("../y", root / "a" / "x" / "to_y"), os.symlink("../x", root / "a" / "y" / "to_x")),
    "dangling": lambda root: os.symlink("nowhere.png", root / "b" / "gone.png"),
    "class to the root": lambda root: os.symlink(".", root / "c"),
    "dangling class": lambda root: os.symlink("nowhere", root / "d"),
}


def _linked_tree(root: Path, kind: str) -> Path:
    write_tree(root, n=3)
    for sub in ("b/sub", "a/x", "a/y"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    LINKS[kind](root)
    return root


@pytest.mark.parametrize("kind", sorted(LINKS))
def test_symlink_loops_are_named_or_skipped(tmp_path, kind):
    root = _linked_tree(tmp_path / "t", kind)
    with pytest.raises(ValueError, match="symbolic link") as e:
        load_dataset(root)
    assert str(root) in str(e.value)
    splits = load_dataset(root, skip_bad=True)  # terminates, and says what it skipped
    assert splits.bad_files and all("symbolic link" in reason for _, reason in splits.bad_files)
    assert splits.class_names == ["a", "b"] and len(splits.train) + len(splits.val) == 6


def test_symlink_loops_through_the_cli(tmp_path, capsys):
    root = _linked_tree(tmp_path / "t", "folder to ..")
    rc, _, err = run_cli(["train", "resnet20", "--data", root, "--out", tmp_path / "o"], capsys)
    assert_clean_error(rc, err, str(root / "a" / "up"), "symbolic link")


def test_a_linked_folder_that_is_no_loop_is_followed(tmp_path):
    root = write_tree(tmp_path / "t", n=3)
    extra = write_tree(tmp_path / "elsewhere", classes=("more",), n=2)
    os.symlink(extra / "more", root / "a" / "more")
    splits = load_dataset(root, val_split=0)
    assert splits.class_names == ["a", "b"] and len(splits.train) == 8 and not splits.bad_files


# --------------------------------------------------------------------------- 4. names that are not UTF-8

ODD = "caf\udce9"  # the folder name b"caf\xe9" (Latin-1), as Python keeps it


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    tree = write_tree(root / "t", classes=(ODD, "b"), n=4)
    summary = archzoo.train("resnet20", str(tree), out=root / "run", val_split=0.5, **FAST)
    return root, tree, summary


def test_a_class_folder_that_is_not_utf8_trains_and_reports(odd_run):
    root, tree, summary = odd_run
    assert summary["class_names"] == ["b", "caf\\xe9"]
    written = json.loads((root / "run" / "summary.json").read_text())
    assert written["class_names"] == ["b", "caf\\xe9"]
    assert {"confusion.png", "predictions.png", "summary.json"} <= set(os.listdir(root / "run"))
    _, meta = archzoo.load_model(root / "run" / "last.safetensors")
    assert meta["class_names"] == ["b", "caf\\xe9"]


def test_eval_and_predict_with_names_that_are_not_utf8(odd_run, capsys):
    root, tree, _ = odd_run
    ckpt = root / "run" / "last.safetensors"
    rc, out, _ = run_cli(["eval", ckpt, "--data", tree, "--json"], capsys)
    assert rc == 0 and json.loads(out)["count"] == 8  # the classes match by their printable names
    rc, out, _ = run_cli(["eval", ckpt, "--data", tree], capsys)
    assert rc == 0 and "caf\\xe9" in out
    # a file whose path is not UTF-8 and holds rich markup ("[/b]")
    odd_file = root / "\udcff[" / "b]odd.png"
    odd_file.parent.mkdir()
    odd_file.write_bytes(next((tree / ODD).iterdir()).read_bytes())
    rc, out, _ = run_cli(["predict", ckpt, odd_file, "--json"], capsys)
    assert rc == 0 and json.loads(out)["predictions"][0]["file"].endswith("\\xff[/b]odd.png")
    for argv in (["predict", ckpt, odd_file], ["cam", ckpt, odd_file, "--out", root / "cams"]):
        # a strict UTF-8 terminal, in a real process
        r = subprocess.run([sys.executable, "-m", "archzoo", *map(str, argv)], capture_output=True,
                           env={**ENV, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}, timeout=300)
        assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
        text = r.stdout.decode("utf-8")  # valid UTF-8
        assert "\\xff[/b]odd.png" in text and "caf\\xe9" in text
    assert any(p.suffix == ".png" for p in (root / "cams").iterdir())


# --------------------------------------------------------------------------- 5. one class


def test_one_class_is_an_error(tmp_path, capsys):
    tree = write_tree(tmp_path / "one", classes=("cat",), n=4)
    with pytest.raises(ValueError, match="only one class \\('cat'\\): a classifier needs at least two"):
        archzoo.train("resnet20", str(tree), **FAST)
    rc, _, err = run_cli(["train", "resnet20", "--data", tree, "--out", tmp_path / "o"], capsys)
    assert_clean_error(rc, err, "only one class")
    # one class left after --skip-bad dropped the others
    write_tree(tmp_path / "one", classes=("dog",), n=2)
    for f in (tmp_path / "one" / "dog").iterdir():
        f.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="only one class.*dropped 1 class folders.*dog"):
        archzoo.train("resnet20", str(tree), skip_bad=True, **FAST)
    # an in-memory dataset of one class, through the Python API
    from archzoo.data import ImageDataset
    import torch

    ds = ImageDataset(["only"], torch.zeros(4, dtype=torch.int64), images=torch.zeros(4, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(UserError, match="only one class"):
        archzoo.train("resnet20", ds, **FAST)


# --------------------------------------------------------------------------- 9. resume with other data


def test_resume_with_other_data_says_the_data_changed(tmp_path, capsys):
    a = write_tree(tmp_path / "a", classes=("x", "y"), n=4)
    b = write_tree(tmp_path / "b", classes=("x", "y", "z"), n=4)
    c = write_tree(tmp_path / "c", classes=("x", "y"), n=6)
    archzoo.train("resnet20", str(a), out=tmp_path / "run", **FAST)
    for other in (b, c):
        rc, _, err = run_cli(["train", "--resume", tmp_path / "run", "--data", other, "--epochs", "2"], capsys)
        assert_clean_error(rc, err, "training data changed")
        with pytest.raises(ValueError, match="the training data changed"):
            archzoo.train(data=str(other), resume=tmp_path / "run", epochs=2, log="quiet")


def test_other_things_in_a_tree_that_are_not_images(tmp_path):
    # a FIFO would block a reader forever; a GIF cut short and a TIFF with a broken header make
    # Pillow raise other exception types than OSError
    root = write_tree(tmp_path / "t", n=3)
    os.mkfifo(root / "a" / "pipe.png")
    with pytest.raises(ValueError, match="pipe.png: not a regular file"):
        load_dataset(root)
    splits = load_dataset(root, skip_bad=True, val_split=0)
    assert [Path(p).name for p, _ in splits.bad_files] == ["pipe.png"] and len(splits.train) == 6
    (root / "a" / "pipe.png").unlink()
    from PIL import Image

    Image.new("P", (30, 30)).save(root / "b" / "anim.gif")
    truncate(root / "b" / "anim.gif", 0.7)
    (root / "b" / "odd.tif").write_bytes(b"II*\x00" + b"\xff" * 60)
    splits = load_dataset(root, skip_bad=True, val_split=0)
    assert sorted(Path(p).name for p, _ in splits.bad_files) == ["anim.gif", "odd.tif"]


def test_a_data_path_that_is_a_broken_or_looping_link(tmp_path, capsys):
    os.symlink("loop", tmp_path / "loop")
    os.symlink("nowhere", tmp_path / "gone")
    for name, needle in (("loop", "symbolic link loop"), ("gone", "which does not exist")):
        with pytest.raises(ValueError, match=needle):
            load_dataset(tmp_path / name)
        rc, _, err = run_cli(["eval", "resnet20.cifar10", "--data", tmp_path / name], capsys)
        assert_clean_error(rc, err, needle)
        rc, _, err = run_cli(["predict", tmp_path / name, tmp_path / name], capsys)
        assert_clean_error(rc, err, name)


def test_class_names_that_look_like_tex_are_drawn_as_text(tmp_path):
    tree = write_tree(tmp_path / "t", classes=("$\\frac{$", "a_b^c $5"), n=4)
    summary = archzoo.train("resnet20", str(tree), out=tmp_path / "run", val_split=0.5, **FAST)
    assert summary["class_names"] == ["$\\frac{$", "a_b^c $5"]
    assert {"confusion.png", "predictions.png", "summary.json"} <= set(os.listdir(tmp_path / "run"))


def test_a_training_set_of_one_class(tmp_path):
    tree = write_tree(tmp_path / "t", n=4)
    with pytest.raises(ValueError, match="training set holds images of one class only"):
        archzoo.train("resnet20", str(tree), train_limit=1, **FAST)
