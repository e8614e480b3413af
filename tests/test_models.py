"""Tests that grow with the registry: every registered classifier gets them for free."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.models.base import AuxLogits

from helpers import n_params, sample_input

CLASSIFIERS = archzoo.list_models(task="classification")


def _logits(out):
    return out.logits if isinstance(out, AuxLogits) else out


def _loss(out):
    if isinstance(out, AuxLogits):
        return out.logits.square().mean() + sum(a.square().mean() for a in out.aux)
    return out.square().mean()


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_backward(name):
    torch.manual_seed(0)
    card = archzoo.model_card(name)
    model = archzoo.create_model(name)
    model.train()
    x = sample_input(card)
    out = model(x)
    assert _logits(out).shape == (x.shape[0], card.num_classes)
    assert torch.isfinite(_logits(out)).all()
    _loss(out).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not no_grad, f"parameters without a finite gradient: {no_grad[:5]}"
    # the shared classifier API
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.ndim == 4 and feats.shape[1] == model.num_features
        pooled = model.forward_head(feats, pre_logits=True)
        # heads with hidden layers (AlexNet/VGG's fully-connected head) give their last hidden width
        assert pooled.shape == (x.shape[0], getattr(model, "head_hidden_size", model.num_features))
    # that forward_head(forward_features(x)) gives the logits is checked against torchvision/timm in
    # test_parity.py (with timm's own forward_features and pre-logits where the reference has them)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_feature_info_matches_maps(name):
    card = archzoo.model_card(name)
    extractor = archzoo.create_model(name, features_only=True).eval()
    x = sample_input(card, batch=1)
    with torch.no_grad():
        maps = extractor(x)
    info = extractor.feature_info
    assert len(maps) == len(info) >= 2
    strides = info.strides()
    assert strides == sorted(strides)
    # the stride is the reduction from the input: an input larger by the largest stride gives every
    # map exactly largest / stride more rows and columns, whatever the padding (unpadded
    # convolutions, as in Inception, shrink a map by a border, so one input size is not enough)
    step = strides[-1]
    with torch.no_grad():
        larger = extractor(torch.randn(*x.shape[:2], x.shape[-2] + step, x.shape[-1] + step))
    for fmap, fmap_larger, entry in zip(maps, larger, info):
        assert fmap.shape[1] == entry["channels"], entry
        assert step % entry["stride"] == 0, entry
        grown = (fmap_larger.shape[-2] - fmap.shape[-2], fmap_larger.shape[-1] - fmap.shape[-1])
        assert grown == (step // entry["stride"],) * 2, (entry, fmap.shape, fmap_larger.shape)
    # the features_only module has no classifier, and selected indices come out in order
    assert not any(k.startswith(card.classifier + ".") for k in extractor.model.state_dict())
    last_two = archzoo.create_model(name, features_only=True, out_indices=(-2, -1)).eval()
    with torch.no_grad():
        for a, b in zip(last_two(x), maps[-2:]):
            assert a.shape == b.shape


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_adaptation_and_safetensors_round_trip(name, tmp_path):
    card = archzoo.model_card(name)
    in_chans = 1 if card.input_size[0] != 1 else 3
    model = archzoo.create_model(name, num_classes=5, in_chans=in_chans).eval()
    x = sample_input(card, batch=2)[:, :1].expand(-1, in_chans, -1, -1).contiguous()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5)
    path = tmp_path / f"{name}.safetensors"
    archzoo.save_model(model, path, class_names=[f"c{i}" for i in range(5)])
    loaded, meta = archzoo.load_model(path)
    assert meta["class_names"] == ["c0", "c1", "c2", "c3", "c4"] and meta["model"] == name
    assert n_params(loaded) == n_params(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out, rtol=0, atol=0)
    model.reset_classifier(3)
    assert model.num_classes == 3
    with torch.no_grad():
        assert model(x).shape == (2, 3)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_card_is_complete(name):
    card = archzoo.model_card(name)
    assert card.name == name and card.family and card.paper and card.tricks
    assert 1989 <= card.year <= 2030
    assert len(card.mean) == len(card.std) == card.input_size[0]
    assert card.min_input_size[1] <= card.input_size[1]
    if card.reference:
        assert card.reference_source in ("torchvision", "timm")
