"""Class activation maps (archzoo.explain, ``archzoo cam``): correctness against a hand computation,
every registered classifier, no hooks or state changes left behind, batching, the command."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import archzoo
from archzoo.explain import METHODS, NotLinearHeadError, cam, embed, explain, explain_method, supports_cam
from archzoo.layers import ClassifierHead

from helpers import randomize_norms, sample_input

CLASSIFIERS = archzoo.list_models(task="classification")
GRADIENT = [m for m in METHODS if m not in ("auto", "cam")]


def _model(name: str = "resnet20", **kwargs):
    torch.manual_seed(0)
    # random norm statistics and scales: features with structure, and residual branches that are not zero
    return randomize_norms(archzoo.create_model(name, **kwargs)).eval()


def _hand_cam(model, x, target=None):
    """Zhou et al. 2016 by hand: the classifier row of the class times the last feature map, ReLU,
    bilinear upsampling to the input, scaled to [0, 1] per image."""
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
    cls = logits.argmax(-1) if target is None else torch.as_tensor(target).expand(len(x))
    w = model.get_classifier().weight
    maps = torch.stack([(w[c][:, None, None] * f).sum(0) for c, f in zip(cls.tolist(), feats)]).clamp(min=0)
    maps = F.interpolate(maps[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = maps.amin((1, 2), keepdim=True)
    hi = maps.amax((1, 2), keepdim=True)
    return (maps - lo) / (hi - lo)


def _no_hooks(model) -> list[str]:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [f"{n or 'model'}.{k}" for n, m in model.named_modules() for k in kinds if getattr(m, k, None)]


def _snapshot(model):
    return ({n: m.training for n, m in model.named_modules()},
            {n: p.requires_grad for n, p in model.named_parameters()},
            {k: v.clone() for k, v in model.state_dict().items()},
            {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()})


def _assert_unchanged(model, snap) -> None:
    modes, flags, state, grads = snap
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for n, p in model.named_parameters():
        if grads[n] is None:
            assert p.grad is None, n
        else:
            assert torch.equal(p.grad, grads[n]), n
    assert not _no_hooks(model)


# --- correctness ----------------------------------------------------------------------------------


def test_cam_matches_hand_computation():
    model = _model()
    x = sample_input(model.card, batch=3, size=32)
    heat = cam(model, x)
    assert heat.shape == (3, 32, 32)
    torch.testing.assert_close(heat, _hand_cam(model, x), atol=1e-6, rtol=0)
    assert torch.allclose(heat.amax((1, 2)), torch.ones(3)) and torch.allclose(heat.amin((1, 2)), torch.zeros(3))
    # an explicit class, the same for every image, and one class per image
    torch.testing.assert_close(cam(model, x, target=7), _hand_cam(model, x, target=7), atol=1e-6, rtol=0)
    torch.testing.assert_close(cam(model, x, target=[1, 2, 3]), _hand_cam(model, x, target=[1, 2, 3]), atol=1e-6, rtol=0)


def test_gradcam_reduces_to_cam_for_linear_heads():
    # for global average pooling + linear, d y_c / d f_k(x, y) = w_ck / (h w) everywhere: Grad-CAM == CAM
    model = _model("resnet18", num_classes=10)
    x = sample_input(model.card, batch=2, size=96)
    torch.testing.assert_close(explain(model, x, "gradcam"), cam(model, x), atol=1e-5, rtol=0)


def test_batched_maps_equal_single_image_maps():
    model = _model()
    x = sample_input(model.card, batch=3, size=32)
    for method in ("cam", "gradcam", "layercam"):
        batched = explain(model, x, method)
        for i in range(3):
            torch.testing.assert_close(batched[i], explain(model, x[i], method)[0], atol=1e-5, rtol=0)


def test_embed_is_the_pooled_features():
    model = _model()
    x = sample_input(model.card, batch=2, size=32)
    emb = embed(model, x)
    assert emb.shape == (2, model.num_features)
    with torch.no_grad():
        torch.testing.assert_close(emb, model.forward_features(x).mean((2, 3)))
        torch.testing.assert_close(model.get_classifier()(emb), model(x))


# --- every classifier -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_classifier_gets_a_map(name):
    card = archzoo.model_card(name)
    torch.manual_seed(0)
    model = archzoo.create_model(name).eval()
    x = sample_input(card, batch=1)
    # original CAM exactly where the head is global average pooling + linear (detected by behaviour;
    # the structural truth here is the standard head class)
    linear = isinstance(getattr(model, "head", None), ClassifierHead) and model.head.pool_type == "avg"
    assert supports_cam(model, x) == linear
    if not linear:
        with pytest.raises(NotLinearHeadError, match="gradcam"):
            cam(model, x)
    heat, method = explain_method(model, x, "auto")
    assert method == ("cam" if linear and card.cam_layer is None else "gradcam")
    assert heat.shape == (1, *x.shape[-2:])
    assert torch.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    assert not _no_hooks(model) and not model.training


def test_card_cam_layer_is_used_and_gives_a_spatial_map():
    # LeNet-5's forward_features ends in a 1x1 map (C5); its card points explanations at C3 (10x10)
    model = _model("lenet5")
    assert model.card.cam_layer == "c3"
    x = sample_input(model.card, batch=2)
    heat = explain(model, x, "gradcam")
    assert heat.shape == (2, 32, 32) and heat.amax((1, 2)).gt(0).all()
    assert heat.flatten(1).std(1).gt(0).all()  # not constant, as a 1x1 map would be


# --- hooks and model state ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cam", *GRADIENT])
def test_explaining_leaves_the_model_as_it_was(method):
    model = _model()
    model.train()
    model.stages[0].requires_grad_(False)  # a partly frozen model in training mode, mid-step
    model(sample_input(model.card, size=32)).square().mean().backward()
    snap = _snapshot(model)
    x = sample_input(model.card, batch=2, size=32, seed=1)
    heat = explain(model, x, method)
    assert heat.shape == (2, 32, 32) and torch.isfinite(heat).all()
    _assert_unchanged(model, snap)
    # an explicitly chosen layer is hooked inside the model: the hooks must go too
    if method != "cam":
        explain(model, x, method, layer="stages.1")
        _assert_unchanged(model, snap)


@pytest.mark.parametrize("method", ["cam", "gradcam", "scorecam"])
def test_no_hooks_or_state_changes_after_an_exception(method):
    model = _model()
    model.train()
    snap = _snapshot(model)
    bad = torch.randn(1, 5, 32, 32)  # wrong channel count: fails inside the forward pass
    with pytest.raises(RuntimeError):
        explain(model, bad, method, layer=None if method == "cam" else "stages.1")
    _assert_unchanged(model, snap)
    with pytest.raises(ValueError, match="out of range"):
        explain(model, sample_input(model.card, batch=1, size=32), method, target=10)
    _assert_unchanged(model, snap)


def test_errors_name_the_way_out():
    vgg = archzoo.create_model("vgg11").eval()
    x = sample_input(vgg.card, batch=1)
    with pytest.raises(NotLinearHeadError, match=r"method='gradcam'"):
        cam(vgg, x)
    with pytest.raises(ValueError, match="unknown method"):
        explain(vgg, x, "gradcam+++")
    with pytest.raises(TypeError, match="classifier"):
        explain(archzoo.create_model("resnet20", features_only=True), x)


# --- pictures and the command -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint written by the training engine (1 epoch of ResNet-20 on 16x16 digits)."""
    from archzoo.engine import train

    out = tmp_path_factory.mktemp("cam") / "run"
    train("resnet20", "digits", out=out, epochs=1, image_size=16, train_limit=128, val_limit=32, batch_size=32,
          log="quiet")
    return out / "last.safetensors"


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    from archzoo.data import load_dataset

    folder = tmp_path_factory.mktemp("images")
    test = load_dataset("digits", subset="test", val_split=0.0, image_size=16).train
    files = []
    for i in range(3):
        files.append(folder / f"digit{i}.png")
        Image.fromarray(test.images[i, 0].numpy(), mode="L").save(files[-1])
    return [str(f) for f in files]


def test_cam_command_on_a_checkpoint(checkpoint, image_files, tmp_path, capsys):
    from archzoo.cli.main import main

    out = tmp_path / "overlays"
    assert main(["cam", str(checkpoint), *image_files, "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"] == "resnet20" and r["method"] == "cam" and not r["random_weights"]
    assert [i["file"] for i in r["images"]] == image_files
    for item in r["images"]:
        assert item["class"] in [str(d) for d in range(10)] and 0 <= item["probability"] <= 1
        with Image.open(item["overlay"]) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert r["grid"] and (out / "grid.cam.png").is_file()
    # a chosen class and method; a class the model does not have is an error
    assert main(["cam", str(checkpoint), image_files[0], "--out", str(out), "--method", "gradcam++", "--class", "3",
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["images"][0]["class"] == "3" and (out / "digit0.gradcam++.png").is_file() and r["grid"] is None
    assert main(["cam", str(checkpoint), image_files[0], "--out", str(out), "--class", "12"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_cam_command_on_a_shipped_tag_and_a_zoo_name(checkpoint, image_files, tmp_path, monkeypatch, capsys):
    from archzoo import shipped
    from archzoo.registry import WeightsRecord
    from archzoo.cli.main import main

    monkeypatch.setattr(shipped, "WEIGHTS_DIR", checkpoint.parent)
    monkeypatch.setitem(shipped.SHIPPED, ("resnet20", "digits16"),
                        WeightsRecord(model="resnet20", tag="digits16", file=checkpoint.name, dataset="digits", num_classes=10,
                                      input_size=(1, 16, 16), mean=(0.5,), std=(0.5,), recipe="test"))
    assert main(["cam", "resnet20.digits16", image_files[0], "--out", str(tmp_path), "--json"]) == 0
    assert not json.loads(capsys.readouterr().out)["random_weights"]
    assert main(["cam", "vgg11", image_files[0], "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    r = json.loads(captured.out)
    assert r["random_weights"] and r["method"] == "gradcam" and "random weights" in captured.err
    assert (tmp_path / "digit0.gradcam.png").is_file()
    assert main(["cam", "vgg11", image_files[0], "--out", str(tmp_path), "--method", "cam"]) == 2
    assert "--method gradcam" in capsys.readouterr().err


def test_demo_report_has_a_cam_grid(tmp_path):
    from archzoo.data import load_dataset
    from archzoo.data.gpu import BatchAugment
    from archzoo.engine.report import write_report

    model = _model("resnet20", num_classes=10, in_chans=1)
    val = load_dataset("digits", subset="test", val_split=0.0, image_size=16).train
    tf = BatchAugment(16, [0.5], [0.25], train=False, in_chans=1)
    readme = write_report(tmp_path, model=model, history=[{"epoch": 1, "train_loss": 1.0, "train_accuracy": 0.5}],
                          metrics={"accuracy": 0.5}, class_names=[str(d) for d in range(10)], images=val.images[:6],
                          labels=val.labels[:6], transform=tf, title="report", facts={})
    with Image.open(tmp_path / "cam.png") as im:
        assert im.format == "PNG"
    assert "(cam.png)" in readme.read_text()
    assert not model.training and not _no_hooks(model)
