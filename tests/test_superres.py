"""SRDenseNet super-resolution (archzoo.superres): the network, its parameter count, the photo data,
training through the engine, ``archzoo eval`` / ``archzoo predict`` and their bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import archzoo
from archzoo.cli.main import main
from archzoo.superres.data import bicubic, degrade, load_photos, psnr_ssim, to_y, upscale
from archzoo.validate import UserError

# a small SRDenseNet (same layout, fewer and narrower parts) where a test trains or runs whole photos
SMALL = {"num_blocks": 2, "num_layers": 3, "growth_rate": 8, "low_chs": 16, "bottleneck_chs": 16}


# every test here on one torch thread (the one_thread fixture of conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def _conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def paper_params(scale: int, c: int = 1, low: int = 128, k: int = 16, blocks: int = 8, layers: int = 8,
                 bottleneck: int = 256, deconv_k: int = 3) -> int:
    """SRDenseNet_All counted from the paper's description (section 3): every weight layer with its biases."""
    n = _conv(c, low, 3)  # low-level features
    chs = low
    for _ in range(blocks):  # layer 1 reads the block's input, layer i the i-1 earlier layers' maps
        n += _conv(chs, k, 3) + sum(_conv(i * k, k, 3) for i in range(1, layers))
        chs += layers * k  # dense skip connections: the next block reads everything so far
    n += _conv(chs, bottleneck, 1)  # 128 + 8 * 128 = 1152 -> 256
    n += (scale.bit_length() - 1) * _conv(bottleneck, bottleneck, deconv_k)  # deconvolutions
    return n + _conv(bottleneck, c, 3)  # reconstruction


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_the_papers_layout_counted_by_hand():
    x4 = archzoo.create_model("srdensenet_x4")
    assert _count(x4) == paper_params(4) == 2_659_585
    assert _count(archzoo.create_model("srdensenet_x2")) == paper_params(2) == 2_069_505
    # 69 weight layers (the paper's count for SRDenseNet_All): 1 + 64 + 1 + 2 + 1
    weights = [m for m in x4.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(weights) == 69
    # reimplementations' 2x2 or 4x4 deconvolutions give other totals; the option builds them
    assert _count(archzoo.create_model("srdensenet_x4", deconv_kernel=2)) == paper_params(4, deconv_k=2) == 2_004_225


def test_shapes_variants_and_the_residual_option():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 9, 11)
    for name, s in (("srdensenet_x4", 4), ("srdensenet_x2", 2)):
        with torch.no_grad():
            assert archzoo.create_model(name, **SMALL)(x).shape == (2, 1, 9 * s, 11 * s)
    for skip in ("hl", "h"):
        m = archzoo.create_model("srdensenet_x4", skip=skip, **SMALL)
        assert m.bottleneck is None and m(x).shape == (2, 1, 36, 44)
    rgb = archzoo.create_model("srdensenet_x2", in_chans=3, **SMALL)
    assert rgb(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    # residual: a net whose reconstruction is zero gives exactly bicubic upsampling
    res = archzoo.create_model("srdensenet_x4", residual=True, **SMALL).eval()
    torch.nn.init.zeros_(res.reconstruction.weight)
    with torch.no_grad():
        torch.testing.assert_close(res(x), torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic"))
    with pytest.raises(UserError, match="scale must be 2, 4 or 8"):
        archzoo.create_model("srdensenet_x4", scale=3)
    with pytest.raises(UserError, match="skip"):
        archzoo.create_model("srdensenet_x4", skip="dense")


def test_tiled_inference_equals_the_whole_image_where_the_tiles_see_enough_context():
    torch.manual_seed(0)
    model = archzoo.create_model("srdensenet_x2", num_blocks=1, num_layers=2, growth_rate=4, low_chs=4,
                                 bottleneck_chs=4).eval()
    lr = torch.rand(1, 1, 30, 26)
    whole = upscale(model, lr, 2, tile=64)
    tiled = upscale(model, lr, 2, tile=8, overlap=6)  # receptive field: 5 convolutions, 5 px: 6 px of overlap hold it
    assert tiled.shape == whole.shape == (1, 1, 60, 52)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_y_degradation_and_scores():
    grey = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    assert to_y(grey).unique().tolist() == [235]  # BT.601 studio range: white is 235
    rgb = torch.zeros(3, 2, 2, dtype=torch.uint8)
    rgb[0] = 255
    assert to_y(rgb).unique().tolist() == [81]  # round(16 + 65.481)
    hr, lr = degrade(torch.rand(1, 1, 50, 47), 4)
    assert hr.shape == (1, 1, 48, 44) and lr.shape == (1, 1, 12, 11)
    assert torch.equal(lr, (lr * 255).round() / 255)  # 8-bit levels
    # a smooth image: bicubic recovers it far better than a constant guess
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = (0.5 + 0.4 * torch.sin(3 * xx) * torch.cos(2 * yy))[None, None]
    hr, lr = degrade(smooth, 4)
    p_bic, s_bic = psnr_ssim(bicubic(lr, 4)[0], hr[0], 4)
    p_flat, _ = psnr_ssim(torch.full_like(hr[0], 0.5), hr[0], 4)
    assert p_bic > 35 > p_flat and 0.9 < s_bic <= 1.0
    q = (hr[0] * 255).round() / 255  # an 8-bit image scores perfectly against itself
    assert psnr_ssim(q, q, 4) == (100.0, pytest.approx(1.0))


def _photo_folder(root, sizes=((96, 120), (100, 90), (110, 110)), seed=0):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin(xx / (5 + i)) * np.cos(yy / 7) + rng.normal(0, 4, (h, w))
        rgb = np.stack([base, base * 0.8 + 20, 255 - base], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / f"p{i}.png")
    (root / "notes.txt").write_text("not a photo: ignored")
    return root


def test_photos_builtin_and_folders(tmp_path):
    splits = load_photos("photos", val_split=0.1, seed=0)
    assert splits.train.task == "super_resolution" and splits.val is not None
    photos = set(splits.train.items) | set(splits.val.items)
    assert len(photos) == 13 and not set(splits.train.items) & set(splits.val.items)
    assert len(splits.train) >= 256  # ~256 patches an epoch
    image, target = splits.train[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 1 and target == {}
    test = load_photos("photos", subset="test", val_split=0.0)
    assert {f.rsplit("/", 1)[-1] for f in test.train.files} == {"camera.png", "chelsea.png", "coffee.png"}
    folder = load_photos(_photo_folder(tmp_path / "ph"), val_split=0.34, patches_per_image=2)
    assert len(folder.train) == 4 and len(folder.val) == 1  # 2 photos x 2 patches, 1 held out
    with pytest.raises(UserError, match="no image files"):
        load_photos(_empty(tmp_path), val_split=0)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "a.txt").write_text("x")
    return d


def test_training_reduces_the_loss_and_checkpoints_round_trip(tmp_path):
    folder = _photo_folder(tmp_path / "ph")
    out = tmp_path / "run"
    summary = archzoo.train("srdensenet_x4", str(folder), out=out, model_kwargs=SMALL, image_size=8, epochs=4,
                            batch_size=4, opt="adamw", lr=2e-3, weight_decay=0.0, val_split=0.34, log="quiet",
                            workers=0, seed=0, augment="none")
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < 0.3 * losses[0], losses  # from an output near 0 towards the image
    assert summary["task"] == "super_resolution" and summary["val_psnr_bicubic"] > 15
    assert {"last.safetensors", "best.safetensors", "predictions.png"} <= set(summary["files"])
    model, meta = archzoo.load_model(out / "last.safetensors")
    assert meta["task"] == "super_resolution" and meta["kwargs"] == SMALL and model.scale == 4
    x = torch.rand(1, 1, 10, 12)
    again = tmp_path / "again.safetensors"
    archzoo.save_model(model, again)
    with torch.no_grad():
        torch.testing.assert_close(archzoo.load_model(again)[0](x), model(x), rtol=0, atol=0)
    # --loss l1 and a resumed run
    s2 = archzoo.train(resume=out, epochs=5, log="quiet")
    assert len(s2["history"]) == 5
    l1 = archzoo.train("srdensenet_x2", str(folder), model_kwargs=SMALL, image_size=8, epochs=1, batch_size=4,
                       loss="l1", log="quiet", workers=0, opt="adamw", lr=1e-3)
    assert l1["train_loss"] > 0


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = archzoo.create_model("srdensenet_x4", residual=True, **SMALL).eval()
    torch.nn.init.zeros_(model.reconstruction.weight)  # exactly bicubic: predictable scores
    torch.nn.init.zeros_(model.reconstruction.bias)
    path = tmp_path_factory.mktemp("ckpt") / "sr.safetensors"
    archzoo.save_model(model, path, task="super_resolution")
    return path


def test_cli_train_eval_predict(tmp_path, small_checkpoint, capsys):
    folder = _photo_folder(tmp_path / "ph")
    out = tmp_path / "run"
    assert main(["train", "srdensenet_x2", "--data", str(folder), "--image-size", "8", "--epochs", "1", "-b", "4",
                 "--opt", "adamw", "--lr", "1e-3", "--workers", "0", "--model-kwargs", *[f"{k}={v}" for k, v in SMALL.items()],
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "last.safetensors").is_file()
    capsys.readouterr()
    # eval: the bicubic-exact model scores exactly what bicubic scores, on whole photos
    assert main(["eval", str(small_checkpoint), "--data", str(folder), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["count"] == 3 and r["scale"] == 4 and r["channel"] == "Y"
    assert r["psnr"] == pytest.approx(r["psnr_bicubic"], abs=1e-6) and r["ssim"] == pytest.approx(r["ssim_bicubic"])
    assert main(["eval", str(out / "last.safetensors"), "--data", str(folder)]) == 0
    assert "PSNR" in capsys.readouterr().out
    # predict: an RGB photo upscaled 4x, and with --reference shrunk first and scored
    photo = folder / "p0.png"
    pred = tmp_path / "pred"
    assert main(["predict", str(small_checkpoint), str(photo), "--out", str(pred), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["predictions"][0]
    assert p["output_size"] == [384, 480]
    up = Image.open(pred / "p0.x4.png")
    assert up.size == (480, 384) and up.mode == "RGB"
    assert Image.open(pred / "p0.compare.png").width == 2 * 480 + 4  # bicubic | model
    assert main(["predict", str(small_checkpoint), str(photo), "--out", str(pred), "--reference", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["predictions"][0]
    assert p["output_size"] == [96, 120] and p["psnr"] == pytest.approx(p["psnr_bicubic"], abs=1e-6)
    assert Image.open(pred / "p0.compare.png").width == 3 * 120 + 8  # bicubic | model | original
    # a grey photo stays grey
    Image.fromarray(np.full((20, 24), 90, np.uint8)).save(tmp_path / "g.png")
    assert main(["predict", str(small_checkpoint), str(tmp_path / "g.png"), "--out", str(pred)]) == 0
    assert Image.open(pred / "g.x4.png").mode == "L"


def test_bad_inputs(tmp_path, small_checkpoint, capsys):
    # a training photo smaller than the HR patch: named, with the fix
    small = _photo_folder(tmp_path / "small", sizes=((96, 96), (40, 60)))
    with pytest.raises(UserError, match=r"p1.png .* 40x60 pixels, smaller than the 96x96"):
        archzoo.train("srdensenet_x4", str(small), image_size=24, epochs=1, val_split=0.0, log="quiet", workers=0,
                      model_kwargs=SMALL)
    # a file that is not an image, a scale mismatch, an image too small to shrink and score
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    assert main(["predict", str(small_checkpoint), str(fake)]) == 2
    assert "not a readable image" in capsys.readouterr().err
    photo = _photo_folder(tmp_path / "ph") / "p0.png"
    assert main(["predict", str(small_checkpoint), str(photo), "--scale", "2"]) == 2
    assert "upscales 4x" in capsys.readouterr().err
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "tiny.png")
    assert main(["predict", str(small_checkpoint), str(tmp_path / "tiny.png"), "--reference"]) == 2
    assert "at least 32x32" in capsys.readouterr().err
    assert main(["eval", str(small_checkpoint), "--data", str(tmp_path / "nowhere")]) == 2
    assert "neither" in capsys.readouterr().err
    assert main(["predict", str(small_checkpoint), str(photo), "--topk", "3"]) == 2
    with pytest.raises(UserError, match="super-resolution net trains on l2 or l1"):
        archzoo.train("srdensenet_x4", "photos", loss="dice", epochs=1, log="quiet")
    with pytest.raises(UserError, match="crop-size"):
        archzoo.train("srdensenet_x4", "photos", crop_size=32, epochs=1, log="quiet")
    with pytest.raises(ValueError, match="super_resolution"):
        archzoo.train("resnet20", "photos", epochs=1, log="quiet")
