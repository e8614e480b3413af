"""Style transfer (archzoo.style): Gram matrices, perceptual layers, Gatys optimisation, the Johnson
transformer net, its training and resume, and ``archzoo stylize``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archzoo
from archzoo.cli.main import main
from archzoo.style import (
    GatysConfig,
    LossWeights,
    PerceptualNet,
    StyleLoss,
    gram_matrix,
    stylize,
)
from archzoo.style.train import StyleTrainConfig, StyleTrainer
from archzoo.validate import UserError


# every test here on one torch thread (the one_thread fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _picture(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth random picture in 0..1 (noise upsampled), more like a photo than white noise."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, max(2, h // 8), max(2, w // 8), generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]


def _png(path, h: int, w: int, seed: int = 0):
    from PIL import Image

    Image.fromarray((_picture(h, w, seed).permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(path)
    return str(path)


def test_gram_matrix_equals_a_naive_sum_over_positions():
    f = torch.randn(2, 3, 4, 5)
    g = gram_matrix(f)
    naive = torch.zeros(2, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                naive[b, i, j] = sum(f[b, i, y, x] * f[b, j, y, x] for y in range(4) for x in range(5)) / (3 * 4 * 5)
    torch.testing.assert_close(g, naive)
    # texture without layout: shuffling the positions leaves the Gram matrix unchanged
    perm = torch.randperm(20)
    torch.testing.assert_close(gram_matrix(f.flatten(2)[..., perm].view_as(f)), g)


def test_vgg_layers_by_name_from_a_torchvision_state_dict(tmp_path):
    """relu1_1 .. relu2_2 of VGG-11 loaded from a torchvision .pth equal torchvision's own layers."""
    from torchvision.models import vgg

    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["A"]).eval()  # torchvision's vgg11().features, without its 120M-weight head
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    for i, (n_in, n_out) in zip((0, 3, 6), ((25088, 4096), (4096, 4096), (4096, 1000))):  # the head: zeros, stored small
        state[f"classifier.{i}.weight"] = torch.zeros(1).expand(n_out, n_in)
        state[f"classifier.{i}.bias"] = torch.zeros(n_out)
    path = tmp_path / "vgg11.pth"
    torch.save(state, path)
    net = PerceptualNet("vgg11", "relu2_1", ["relu1_1", "relu3_2"], weights=str(path))
    assert net.content_name == "relu2_1" and net.style_names == ["relu1_1", "relu3_2"]
    x = _picture(40, 48)[None]
    feats = net(x)
    xn = (x - torch.tensor(archzoo.model_card("vgg11").mean).view(1, 3, 1, 1)) / torch.tensor(
        archzoo.model_card("vgg11").std).view(1, 3, 1, 1)
    with torch.no_grad():  # torchvision's vgg11 features: conv0 relu1 pool2 conv3 relu4 pool5 conv6 relu7 conv8 relu9
        torch.testing.assert_close(feats["relu1_1"], features[:2](xn), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(feats["relu2_1"], features[:5](xn), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(feats["relu3_2"], features[:10](xn), atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in net.parameters())
    # nothing past the deepest layer is kept: VGG-11's stages 4 and 5 are not built
    assert not any(k.startswith(("stages.3", "stages.4", "head")) for k in net.body.state_dict())


def test_any_backbone_by_feature_map_index_and_bad_layer_names():
    net = PerceptualNet("resnet20", weights="resnet20.cifar10")  # shipped CIFAR weights
    info = archzoo.create_model("resnet20", features_only=True).feature_info
    assert net.style_names == [str(i) for i in range(len(info))] and net.content_name == str(len(info) // 2)
    feats = net(_picture(32, 32)[None])
    assert [feats[k].shape[1] for k in net.style_names] == info.channels()
    with pytest.raises(UserError, match="--content-layer.*not a VGG"):
        PerceptualNet("resnet20", content_layer="relu2_2")
    with pytest.raises(UserError, match="--style-layers.*4 feature maps"):
        PerceptualNet("resnet20", style_layers=["7"])
    with pytest.raises(UserError, match="--style-layers.*no layer 'relu3_4'.*relu3_3"):
        PerceptualNet("vgg16", style_layers=["relu3_4"])
    for name in ("yolov8n", "johnson_transformer_net"):  # no features_only backbone
        with pytest.raises(UserError, match=f"--backbone: {name} has no features_only"):
            PerceptualNet(name)
    with pytest.raises(UserError, match="--backbone.*vgg19"):
        PerceptualNet("vgg91")


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_gatys_lowers_the_loss_in_a_few_steps(optimizer):
    torch.manual_seed(0)
    net = PerceptualNet("resnet20", weights="resnet20.cifar10")
    content, style = _picture(40, 40, seed=1), _picture(40, 40, seed=2)
    loss_fn = StyleLoss(net, style, LossWeights(style=10.0))
    image, report = stylize(content, loss_fn, GatysConfig(steps=12, optimizer=optimizer))
    # L-BFGS checks its budget between line searches: the last one may take a few more evaluations
    assert (report["evaluations"] == 12 if optimizer == "adam" else 12 <= report["evaluations"] <= 12 + 25)
    assert image.shape == content.shape
    assert report["first"]["content"] == 0.0  # starts from the content picture
    assert report["final"]["style"] < 0.7 * report["first"]["style"]
    assert report["final"]["loss"] < 0.7 * report["first"]["loss"]
    assert 0 <= image.min() and image.max() <= 1 and not torch.equal(image, content)


@pytest.mark.parametrize("hw", [(32, 32), (36, 44), (35, 33), (50, 41)])
def test_transformer_net_keeps_the_input_size(hw):
    torch.manual_seed(0)
    model = archzoo.create_model("johnson_transformer_net").eval()
    x = _picture(*hw)[None]
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    card = archzoo.model_card("johnson_transformer_net")
    assert card.task == "style_transfer" and {"instance_norm", "perceptual_loss", "gram_matrix_style_loss"} <= set(card.tricks)
    assert sum(p.numel() for p in model.parameters()) == 1_679_235  # 3 convs, 5 residual blocks, 2 up, 1 out
    assert isinstance(model.down[0].norm, torch.nn.InstanceNorm2d)
    assert isinstance(archzoo.create_model("johnson_transformer_net", norm="batch").down[0].norm, torch.nn.BatchNorm2d)
    with pytest.raises(UserError, match="num_classes"):
        archzoo.create_model("johnson_transformer_net", num_classes=10)


def _train_cfg(**kw):
    return StyleTrainConfig(**{"steps": 40, "batch_size": 2, "size": 32, "lr": 3e-3, "backbone": "resnet20",
                                "features_weights": "resnet20.cifar10", "checkpoint_every": 10, **kw})


def _photos():
    return [(_picture(48, 56, seed=s) * 255).byte().permute(1, 2, 0).numpy() for s in range(3)]


def test_tiny_training_run_lowers_the_perceptual_loss():
    trainer = StyleTrainer(_picture(32, 32, seed=9), _photos(), _train_cfg())
    while trainer.step < 40:
        trainer.train_step()
    first = sum(d["loss"] for d in trainer.losses[:5]) / 5
    last = sum(d["loss"] for d in trainer.losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    style, photos = _picture(32, 32, seed=9), _photos()
    straight = StyleTrainer(style, photos, _train_cfg())
    for _ in range(6):
        straight.train_step()
    first = StyleTrainer(style, photos, _train_cfg())
    for _ in range(3):
        first.train_step()
    first.save(tmp_path / "state.safetensors", {"style": "s"})
    resumed = StyleTrainer(style, photos, _train_cfg())
    resumed.load(tmp_path / "state.safetensors")
    for _ in range(3):
        resumed.train_step()
    assert resumed.step == 6 and resumed.losses == straight.losses
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(UserError, match="size=32, not 40"):
        StyleTrainer(style, photos, _train_cfg(size=40)).load(tmp_path / "state.safetensors")


SMALL_NET = ["--backbone", "resnet20", "--features-weights", "cifar10"]


def test_cli_gatys_with_built_in_pictures(tmp_path, capsys):
    out = tmp_path / "cat.png"
    assert main(["stylize", "chelsea", "hubble", "--out", str(out), "--size", "48", "--steps", "4", "--compare",
                 "--quiet", *SMALL_NET]) == 0
    report = json.loads(capsys.readouterr().out)
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (48, 32)  # chelsea is 451x300: longer side 48
    assert (tmp_path / "cat_compare.png").is_file()
    assert report["evaluations"] >= 4 and report["final"]["loss"] < report["first"]["loss"]


def test_cli_trains_resumes_and_applies(tmp_path, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):
        _png(data / f"p{i}.png", 40, 48, seed=i)
    style = _png(tmp_path / "style.png", 40, 40, seed=7)
    run = tmp_path / "run"
    argv = ["stylize", "--train", style, "--data", str(data), "--out", str(run), "--size", "32", "--steps", "3",
            "--batch-size", "2", "--checkpoint-every", "2", "--quiet", *SMALL_NET]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    for name in ("model.safetensors", "state.safetensors", "style.png", "preview.png", "report.json"):
        assert (run / name).is_file(), name
    assert report["steps"] == 3 and report["photos"] == 3
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err  # an existing run is not overwritten
    assert main([*argv[:10], "5", *argv[11:], "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 5
    model, meta = archzoo.load_model(run / "model.safetensors")
    assert meta["model"] == "johnson_transformer_net" and meta["style"] == style
    # apply: one picture to a file, two to a folder, each of its own size
    one = _png(tmp_path / "c1.png", 44, 36, seed=3)
    two = _png(tmp_path / "c2.png", 33, 50, seed=4)
    assert main(["stylize", one, "--model", str(run), "--out", str(tmp_path / "o.png"), "--quiet"]) == 0
    from PIL import Image

    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (36, 44)
    assert main(["stylize", one, two, "--model", str(run / "model.safetensors"), "--out", str(tmp_path / "many"),
                 "--quiet"]) == 0
    results = json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])["results"]
    assert [r["size"] for r in results] == [[44, 36], [33, 50]]
    with Image.open(tmp_path / "many" / "c2.png") as im, torch.no_grad():
        x = torch.from_numpy(np.asarray(Image.open(two), dtype=np.float32) / 255).permute(2, 0, 1)
        expect = (model(x[None])[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.abs(np.asarray(im).astype(int) - expect).max() <= 1


@pytest.mark.parametrize("argv,needle", [
    (["nowhere.png", "hubble"], "CONTENT: 'nowhere.png' is neither an image file nor a built-in"),
    (["NOTIMAGE", "hubble"], "CONTENT: cannot read"),
    (["chelsea", "TINY"], "STYLE: .* is 20x16 pixels; style transfer needs at least 32"),
    (["chelsea"], "give CONTENT and STYLE"),
    (["chelsea", "hubble", "--backbone", "yolov8n"], "--backbone: yolov8n has no features_only"),
    (["chelsea", "hubble", "--features-weights", "NOTIMAGE"], "--features-weights"),
    (["chelsea", "hubble", "--style-layers", "relu9_1"], "--style-layers"),
    (["chelsea", "hubble", "--out-as-dir"], "folder"),
    (["chelsea", "hubble", "--out-no-suffix"], "picture file name"),
    (["chelsea", "hubble", "--batch-size", "2"], "--batch-size is for --train"),
    (["chelsea", "hubble", "--style-weight", "-1"], "--style-weight"),
    (["--train", "hubble", "--data", "nowhere"], "--data: 'nowhere' does not exist"),
    (["--train", "hubble", "--data", "NOTIMAGEDIR"], "--data .*bad.png"),
    (["--train", "hubble", "chelsea"], "--train takes its content photos from --data"),
    (["--train", "hubble", "--resume"], "--resume: no checkpoint"),
    (["chelsea", "--model", "nowhere.safetensors"], "--model: 'nowhere.safetensors' is not a trained style model"),
    (["chelsea", "--model", "CLASSIFIER"], "--model: .* holds resnet20, a classification model"),
    (["chelsea", "--model", "CLASSIFIER", "--optimizer", "adam"], "--optimizer is for the Gatys optimisation"),
])
def test_cli_bad_inputs_exit_2_naming_the_argument(argv, needle, tmp_path, capsys):
    (tmp_path / "not.png").write_text("not an image")
    _png(tmp_path / "tiny.png", 16, 20)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "bad.png").write_text("nope")
    archzoo.save_model(archzoo.create_model("resnet20"), tmp_path / "r20.safetensors")
    subst = {"NOTIMAGE": str(tmp_path / "not.png"), "TINY": str(tmp_path / "tiny.png"),
             "NOTIMAGEDIR": str(tmp_path / "dir"), "CLASSIFIER": str(tmp_path / "r20.safetensors")}
    out = str(tmp_path / "out.png")
    if "--out-as-dir" in argv:
        argv, out = [a for a in argv if a != "--out-as-dir"], str(tmp_path)
    if "--out-no-suffix" in argv:
        argv, out = [a for a in argv if a != "--out-no-suffix"], str(tmp_path / "out")
    if "--train" in argv:
        out = str(tmp_path / "run")
    argv = [subst.get(a, a) for a in argv]
    small = [] if "--model" in argv or "--backbone" in argv else ["--steps", "1", *SMALL_NET[:2]]
    assert main(["stylize", *argv, "--out", out, "--size", "64", *small]) == 2
    err = capsys.readouterr().err
    import re

    assert re.search(needle, err), err
