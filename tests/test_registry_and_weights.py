"""The registry, the build funnel and weight loading (ours, torchvision's, timm's)."""

from __future__ import annotations

import re

import pytest
import torch

import archzoo
from archzoo.checkpoint import save_tensors

from helpers import build_reference, randomize_norms


def test_list_models_filters():
    assert "resnet50" in archzoo.list_models("resnet*")
    assert all(n.startswith("resnet") for n in archzoo.list_models("resnet*"))
    se = archzoo.list_models(task="classification", trick="squeeze_excitation")
    assert "seresnext50_32x4d" in se and "resnet50" not in se
    assert archzoo.list_models(family="resnext") == ["resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d"]
    with pytest.raises(KeyError, match="unknown trick"):
        archzoo.list_models(trick="magic")


def test_unknown_model_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean.*resnet50"):
        archzoo.create_model("resnet05")


def test_duplicate_registration_raises():
    from archzoo.registry import register_model

    card = archzoo.model_card("resnet18")
    with pytest.raises(ValueError, match="registered twice"):
        register_model(card, lambda **kw: None)


def test_card_with_unknown_trick_raises():
    weights = archzoo.model_card("resnet18").default_weights
    with pytest.raises(ValueError, match="unknown tricks"):
        archzoo.ModelCard(name="x", family="x", year=2020, paper="p", tricks=("warp_drive",), default_weights=weights)


def test_card_years_agree_with_the_papers_arxiv_ids():
    # an arXiv id YYMM.NNNNN dates the paper: a card's year is the year its paper appeared
    dated = 0
    for name in archzoo.list_models():
        card = archzoo.model_card(name)
        m = re.search(r"arXiv:(\d\d)(\d\d)\.\d{4,5}", card.paper)
        if m:
            dated += 1
            assert card.year == 2000 + int(m.group(1)), (name, card.year, card.paper)
    assert dated > 50


# Where a card deliberately differs from the preprocessing its reference's weights were published with.
PREPROCESSING_DIFFERS = {
    "efficientnet_b2": "input size: the paper's 260; torchvision evaluates its weights at 288",
}


def _published_preprocessing(reference: str):
    """(input size, mean, std) the reference library publishes with its default weights."""
    source, name = reference.split(":")
    if source == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(name)
        return tuple(cfg.input_size), tuple(cfg.mean), tuple(cfg.std)
    import torchvision

    t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return (3, t.crop_size[0], t.crop_size[0]), tuple(t.mean), tuple(t.std)


@pytest.mark.parametrize("name", [n for n in archzoo.list_models(task="classification") if archzoo.model_card(n).reference])
def test_card_preprocessing_is_what_the_reference_publishes(name):
    card = archzoo.model_card(name)
    ours = (tuple(card.input_size), tuple(card.mean), tuple(card.std))
    theirs = _published_preprocessing(card.reference)
    same = [ours[0] == theirs[0], *(a == pytest.approx(b, abs=1e-3) for a, b in zip(ours[1:], theirs[1:]))]
    if name in PREPROCESSING_DIFFERS:
        assert not all(same), f"{name} now agrees with {card.reference}: drop it from PREPROCESSING_DIFFERS"
    else:
        assert all(same), (ours, theirs)


def test_features_only_contract():
    f = archzoo.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    assert f.feature_info.channels() == [256, 512, 1024, 2048]
    assert f.feature_info.strides() == [4, 8, 16, 32]
    maps = f(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [256, 512, 1024, 2048]
    with pytest.raises(ValueError, match="out of range"):
        archzoo.create_model("resnet50", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="only meaningful"):
        archzoo.create_model("resnet50", out_indices=(1,))


def test_features_stop_after_the_deepest_requested_map():
    f = archzoo.create_model("resnet18", features_only=True, out_indices=(1,))
    assert list(f.model.stages._modules) == ["0"]  # later stages are not built into the backbone
    f(torch.randn(1, 3, 64, 64))
    assert all(not m._forward_hooks for m in f.modules())


@pytest.fixture
def torchvision_resnet18():
    return randomize_norms(build_reference("torchvision:resnet18")).eval()


def test_weights_from_a_torchvision_pth(tmp_path, torchvision_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision_resnet18.state_dict(), path)
    model = archzoo.create_model("resnet18", weights=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torchvision_resnet18(x), rtol=0, atol=1e-5)


def test_weights_adapt_classes_and_channels(tmp_path, torchvision_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": torchvision_resnet18.state_dict()}, path)
    with pytest.warns(UserWarning, match="classifier"):
        model = archzoo.create_model("resnet18", num_classes=7, in_chans=1, weights=path).eval()
    # a grey image through the adapted conv equals the RGB image of three equal channels through the original
    grey = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        ours = model.forward_features(grey)
        ref = torch.nn.Sequential(*list(torchvision_resnet18.children())[:-2])(grey.expand(-1, 3, -1, -1))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert model(grey).shape == (1, 7)


def test_weights_that_do_not_fit_name_the_problem(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_reference("torchvision:resnet34").state_dict(), path)
    with pytest.raises(ValueError, match=r"does not fit resnet18.*unexpected"):
        archzoo.create_model("resnet18", weights=path)
    with pytest.raises(FileNotFoundError):
        archzoo.create_model("resnet18", weights=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="neither a weights file nor a shipped tag"):
        archzoo.create_model("resnet18", weights="imagenet_please")


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"weight": Evil()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        archzoo.create_model("resnet18", weights=path)


def test_safetensors_for_another_model_is_refused(tmp_path):
    path = tmp_path / "r20.safetensors"
    archzoo.save_model(archzoo.create_model("resnet20"), path)
    with pytest.raises(ValueError, match="holds weights for 'resnet20'"):
        archzoo.create_model("resnet32", weights=path)
    model = archzoo.create_model("resnet20", weights=path)
    assert model.num_classes == 10


def test_corrupt_safetensors_names_the_file(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="bad.safetensors"):
        archzoo.load_model(path)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    save_tensors(path, {"a": torch.zeros(2)}, {"note": "x"})  # "model" would have to name a registered model
    import archzoo.checkpoint as ck

    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError):
        save_tensors(path, {"a": torch.ones(2)}, {"note": "y"})
    tensors, meta = ck.read_tensors(path)
    assert tensors["a"].sum() == 0 and meta["note"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_save_model_records_the_model_as_it_is_now(tmp_path):
    # reset_classifier changes the class count, features_only removes the classifier, and
    # reset_classifier(0) drops auxiliary heads: the file must still rebuild the model
    model = archzoo.create_model("resnet20", num_classes=5)
    model.reset_classifier(3)
    archzoo.save_model(model, tmp_path / "r.safetensors")
    assert archzoo.load_model(tmp_path / "r.safetensors")[0].num_classes == 3
    extractor = archzoo.create_model("resnet20", features_only=True, out_indices=(1, 3)).eval()
    archzoo.save_model(extractor, tmp_path / "f.safetensors")
    loaded, meta = archzoo.load_model(tmp_path / "f.safetensors")
    x = torch.randn(1, 3, 32, 32)
    assert meta["out_indices"] == [1, 3]
    assert all(torch.equal(a, b) for a, b in zip(loaded(x), extractor(x)))
    googlenet = archzoo.create_model("googlenet", num_classes=4)
    googlenet.reset_classifier(0)
    archzoo.save_model(googlenet, tmp_path / "g.safetensors")
    assert archzoo.load_model(tmp_path / "g.safetensors")[0].aux_heads is None
    # eval, predict and cam need a prediction head: they load with need_head=True
    with pytest.raises(ValueError, match="features_only extractor"):
        archzoo.load_model(tmp_path / "f.safetensors", need_head=True)
    with pytest.raises(ValueError, match="num_classes 0"):
        archzoo.load_model(tmp_path / "g.safetensors", need_head=True)


def test_load_model_takes_shipped_tags_and_refuses_bare_state_dicts(tmp_path):
    model, meta = archzoo.load_model("resnet20.cifar10")
    assert meta["model"] == "resnet20" and not model.training
    torch.save(archzoo.create_model("resnet20").state_dict(), tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="create_model"):
        archzoo.load_model(tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="shipped tags: cifar10"):
        archzoo.load_model("resnet20.imagenet")
