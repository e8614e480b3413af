"""The train / eval / predict / demo commands, resume after SIGKILL, transfer learning, shipped
weight tags and data-parallel training under torchrun (CPU, gloo)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import archzoo
from archzoo.checkpoint import read_tensors
from archzoo.cli.main import main
from archzoo.data import load_dataset

TINY = ["--data", "digits", "--image-size", "8", "--train-limit", "256", "--val-limit", "64", "-b", "32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archzoo", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained run (2 epochs of ResNet-20 on 8x8 digits)."""
    out = tmp_path_factory.mktemp("cli") / "r20"
    assert main(["train", "resnet20", *TINY, "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    return out


def _write_tree(root: Path, classes: dict[str, list[int]], images: torch.Tensor) -> Path:
    """An ImageFolder tree: ``root/<class>/<i>.png`` for the given image indices."""
    for name, idx in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(images[i, 0].numpy(), mode="L").save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset("digits", subset="test", val_split=0.0, image_size=8).train


def test_eval_json_contract(run_dir, capsys):
    assert main(["eval", str(run_dir / "best.safetensors"), "--data", "digits", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"accuracy", "top5", "loss", "count"} <= set(r)
    assert r["count"] == 359 and 0 <= r["accuracy"] <= r["top5"] <= 1 and r["loss"] > 0
    assert len(r["confusion"]) == 10 and sum(map(sum, r["confusion"])) == 359
    assert r["accuracy"] == pytest.approx(sum(r["confusion"][i][i] for i in range(10)) / 359)


def test_eval_on_the_held_out_split(run_dir, capsys):
    # the images `train --val-split 0.1 --seed 0` held out, and nothing else
    held_out = load_dataset("digits", val_split=0.1, seed=0, image_size=8).val
    assert main(["eval", str(run_dir / "best.safetensors"), "--data", "digits", "--held-out", "0.1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    model, meta = archzoo.load_model(run_dir / "best.safetensors")
    from archzoo.data.gpu import BatchAugment

    tf = BatchAugment(8, meta["mean"], meta["std"], train=False, in_chans=1)
    with torch.no_grad():
        pred = model(tf(held_out.images)).argmax(1)
    assert r["count"] == len(held_out) > 100 and r["held_out"] == 0.1
    assert r["accuracy"] == pytest.approx((pred == held_out.labels).float().mean().item())
    assert main(["eval", str(run_dir / "best.safetensors"), "--data", "digits", "--held-out", "1.5"]) == 2


def test_eval_matches_classes_by_name(run_dir, digits_test, tmp_path, capsys):
    model, meta = archzoo.load_model(run_dir / "best.safetensors")
    # a folder with only the digits 3 and 7: its labels 0 and 1 are the checkpoint's classes 3 and 7
    picks = {c: torch.nonzero(digits_test.labels == int(c)).flatten()[:12].tolist() for c in ("3", "7")}
    tree = _write_tree(tmp_path / "two", picks, digits_test.images)
    assert main(["eval", str(run_dir / "best.safetensors"), "--data", str(tree), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    idx = torch.tensor(picks["3"] + picks["7"])
    from archzoo.data.gpu import BatchAugment

    tf = BatchAugment(8, meta["mean"], meta["std"], train=False, in_chans=1)
    with torch.no_grad():
        pred = model(tf(digits_test.images[idx])).argmax(1)
    expect = (pred == digits_test.labels[idx]).float().mean().item()
    assert r["count"] == 24 and r["accuracy"] == pytest.approx(expect)
    assert set(r["per_class_accuracy"]) == {"3", "7"}
    # a class the checkpoint never saw is an error that lists both class lists
    _write_tree(tmp_path / "two", {"cat": picks["3"][:2]}, digits_test.images)
    assert main(["eval", str(run_dir / "best.safetensors"), "--data", str(tree), "--json"]) == 2
    err = capsys.readouterr().err
    assert "['cat']" in err and "data (3): ['3', '7', 'cat']" in err and "checkpoint (10)" in err


def test_predict(run_dir, digits_test, tmp_path, capsys):
    files = []
    for i in range(3):
        f = tmp_path / f"img{i}.png"
        Image.fromarray(digits_test.images[i, 0].numpy(), mode="L").save(f)
        files.append(str(f))
    assert main(["predict", str(run_dir / "last.safetensors"), *files, "--topk", "3", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [p["file"] for p in r["predictions"]] == files
    for p in r["predictions"]:
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(t["class"] == str(t["index"]) for t in p["top"])
    assert main(["predict", str(run_dir / "last.safetensors"), files[0]]) == 0
    assert "img0.png" in capsys.readouterr().out


def test_shipped_weight_tags(run_dir, tmp_path, monkeypatch, capsys):
    from archzoo import shipped
    from archzoo.registry import WeightsRecord

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", run_dir)
    monkeypatch.setitem(shipped.SHIPPED, ("resnet20", "digits8"),
                        WeightsRecord(model="resnet20", tag="digits8", file="best.safetensors", dataset="digits", num_classes=10,
                                      input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), recipe="test"))
    assert main(["eval", "resnet20.digits8", "--data", "digits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 359
    assert shipped.resolve_checkpoint("digits8", model="resnet20") == run_dir / "best.safetensors"
    model = archzoo.create_model("resnet20", in_chans=1, weights="digits8")
    ref, _ = archzoo.load_model(run_dir / "best.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
    assert main(["eval", "resnet20.nosuchtag", "--data", "digits"]) == 2
    assert "shipped tags: cifar10, digits8" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.safetensors"), "--data", "digits"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_init_from_our_checkpoint_and_freeze_backbone(run_dir, digits_test, tmp_path):
    tree = _write_tree(tmp_path / "three", {c: torch.nonzero(digits_test.labels == i).flatten()[:10].tolist()
                                             for i, c in enumerate(("zero", "one", "two"))}, digits_test.images)
    out = tmp_path / "ft"
    assert main(["train", "resnet20", "--data", str(tree), "--init", str(run_dir / "best.safetensors"),
                 "--freeze", "backbone", "--epochs", "1", "-b", "8", "--out", str(out), "--quiet"]) == 0
    init, _ = read_tensors(run_dir / "best.safetensors")
    tuned, meta = read_tensors(out / "last.safetensors")
    assert meta["class_names"] == ["one", "two", "zero"] and tuned["head.fc.weight"].shape == (3, 64)
    body = [k for k in init if not k.startswith("head.fc.")]
    assert body and all(torch.equal(init[k], tuned[k]) for k in body)  # frozen, running stats included


def test_init_from_a_torchvision_state_dict_and_fine_tune(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(num_classes=1000)
    pth = tmp_path / "tv.pth"
    torch.save(ref.state_dict(), pth)
    imgs = (torch.rand(16, 1, 32, 32) * 255).to(torch.uint8)
    tree = _write_tree(tmp_path / "tree", {"a": list(range(8)), "b": list(range(8, 16))}, imgs)
    out = tmp_path / "ft"
    assert main(["train", "resnet18", "--data", str(tree), "--val-split", "0", "--init", str(pth), "--epochs", "1",
                 "-b", "16", "--lr", "0", "--backbone-lr-scale", "0.1", "--out", str(out), "--quiet"]) == 0
    tuned, meta = read_tensors(out / "last.safetensors")
    expect = archzoo.convert_weights("resnet18", ref.state_dict(), "torchvision")
    # lr 0: the weights are the converted torchvision ones (first conv summed to one grey channel)
    torch.testing.assert_close(tuned["stem.conv.conv.weight"], expect["stem.conv.conv.weight"].sum(1, keepdim=True))
    assert torch.equal(tuned["stages.3.1.conv2.conv.weight"], expect["stages.3.1.conv2.conv.weight"])
    assert meta["in_chans"] == 1 and meta["num_classes"] == 2


def test_log_json_events(tmp_path, capsys):
    assert main(["train", "resnet20", *TINY, "--epochs", "2", "--out", str(tmp_path / "j"), "--log-json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["start", "epoch", "epoch", "end"]
    assert events[1]["epoch"] == 1 and {"train_loss", "val_accuracy", "images_per_s", "lr"} <= set(events[1])
    assert events[-1]["val_count"] == 64


def test_sigkill_then_resume_gives_identical_weights(tmp_path):
    args = ["train", "resnet20", *TINY, "--epochs", "6", "--deterministic", "--seed", "1", "--opt", "adamw",
            "--ema", "--mixup", "0.2", "--quiet"]
    full = _cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "archzoo", *args, "--out", str(killed)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 200
    while not (killed / "state.safetensors").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # right after the first checkpoint, mid-way through epoch 2
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    epoch_at_kill = read_tensors(killed / "state.safetensors")[1]["epoch"]
    assert 1 <= epoch_at_kill < 6

    resumed = _cli("train", "--resume", str(killed), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a, meta_a = read_tensors(tmp_path / "full" / "state.safetensors")
    b, meta_b = read_tensors(killed / "state.safetensors")
    assert meta_b["epoch"] == 6 and sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert meta_a["history"][-1]["val_loss"] == meta_b["history"][-1]["val_loss"]
    la, _ = read_tensors(tmp_path / "full" / "last.safetensors")
    lb, _ = read_tensors(killed / "last.safetensors")
    assert all(torch.equal(la[k], lb[k]) for k in la)


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "archzoo", "train", "resnet20", *TINY, "--epochs", "1", "--out", str(out), "--log-json"],
                       env=ENV, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["start", "epoch", "end"]  # rank 0 only
    assert events[0]["world_size"] == 2 and events[0]["steps_per_epoch"] == 256 // 32
    assert events[-1]["val_count"] == 64  # validation sharded across ranks, then summed
    model, meta = archzoo.load_model(out / "last.safetensors")
    assert meta["epoch"] == 1 and not any(k.startswith("module.") for k in model.state_dict())


def test_demo_reaches_the_accuracy_the_readme_claims(tmp_path, capsys):
    """The whole demo, as ``archzoo demo`` runs it (10 epochs of batches of 32; README: 98.6%
    validation, 99.2% test accuracy). Measured here: 98.60% validation (141 of 143), 99.16% test
    (356 of 359), 83 s in all; the earlier recipe (20 epochs of 64) gave 99.30% / 99.16% in ~91 s. The
    floor of 97% leaves room for other CPUs' arithmetic, not for a broken recipe.

    CI runs the README's ``archzoo demo`` as a step before the tests and names its folder and
    printed output in ``ARCHZOO_CI_DEMO``: that run is the one checked here (the same command,
    not run twice); anywhere else the test runs the demo itself."""
    ci_demo = os.environ.get("ARCHZOO_CI_DEMO")
    if ci_demo:
        demo = Path(ci_demo)
        out = (demo / "stdout.txt").read_text()
        demo = demo / "archzoo-demo"
    else:
        demo = tmp_path / "demo"
        assert main(["demo", "--out", str(demo), "--quiet"]) == 0
        out = capsys.readouterr().out
    m = re.search(r"validation accuracy ([\d.]+)% \((\d+) images\), test accuracy ([\d.]+)% \((\d+) images\)", out)
    assert m, out
    val, n_val, test, n_test = float(m[1]) / 100, int(m[2]), float(m[3]) / 100, int(m[4])
    assert val >= 0.97 and test >= 0.97, out
    # scored on images it never trained on: scikit-learn's 1,797 digits split three ways
    from sklearn.datasets import load_digits

    report = json.loads((demo / "report.json").read_text())
    n_train = int(re.search(r"(\d+) train", report["data"])[1])
    assert n_train + n_val + n_test == len(load_digits().images) and n_test >= 300
    assert report["metrics"]["accuracy"] == pytest.approx(val, abs=5e-5) and report["metrics"]["count"] == n_val
    for name in ("README.md", "curves.png", "confusion.png", "predictions.png", "best.safetensors"):
        assert (demo / name).is_file(), name
