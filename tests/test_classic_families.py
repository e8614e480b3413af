"""What is special about the classic classifiers: LeNet-5's published layout and parameter count,
AlexNet's local response norm and fully-connected head, VGG's 3x3 stacks, SqueezeNet's conv head,
and the auxiliary classifiers and input transform of GoogLeNet and Inception-v3."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import archzoo
from archzoo.layers import AvgPoolAtLeast, ConnectionTableConv, Fire
from archzoo.models.base import AuxLogits
from archzoo.models.lenet import C3_TABLE

from helpers import converted, max_rel_diff, n_params, sample_input


# --- LeNet-5 ------------------------------------------------------------------------------------


def test_lenet5_has_the_papers_60000_parameters():
    model = archzoo.create_model("lenet5")
    per_layer = {name: n_params(m) for name, m in model.named_children()}
    # section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164; the RBF codes are fixed
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "head": 10164}
    assert n_params(model) == 60_000
    assert model.head.fc.codes.shape == (10, 84) and not model.head.fc.codes.requires_grad
    assert set(model.head.fc.codes.unique().tolist()) == {-1.0, 1.0}
    x = sample_input(archzoo.model_card("lenet5"))
    assert x.shape[1:] == (1, 32, 32)
    assert model.forward_features(x).shape[1:] == (120, 1, 1)  # C5 is 1x1 on 32x32 input


def test_lenet5_c3_follows_the_connection_table():
    torch.manual_seed(0)
    c3 = ConnectionTableConv(6, C3_TABLE, 5)
    x = torch.randn(1, 6, 14, 14, requires_grad=True)
    out = c3(x)
    assert out.shape == (1, 16, 10, 10)
    for j, inputs in enumerate(C3_TABLE):
        (grad,) = torch.autograd.grad(out[:, j].sum(), x, retain_graph=True)
        seen = {c for c in range(6) if grad[0, c].abs().sum() > 0}
        assert seen == set(inputs), (j, seen, inputs)


def test_lenet5_scores_are_distances_to_the_class_codes():
    model = archzoo.create_model("lenet5").eval()
    codes = model.head.fc.codes
    feats = torch.randn(3, 84)
    scores = model.head.fc(feats)
    torch.testing.assert_close(scores, -torch.cdist(feats, codes).square(), rtol=1e-5, atol=1e-4)
    assert model.head.fc(codes).argmax(1).tolist() == list(range(10))  # each code is nearest to itself


# --- AlexNet, VGG -------------------------------------------------------------------------------


def test_alexnet_lrn_is_the_papers_network():
    model = archzoo.create_model("alexnet_lrn")
    # "60 million parameters": 60,965,224 with the two-GPU grouping of conv2, conv4, conv5
    assert abs(n_params(model) - 60e6) / 60e6 < 0.02
    assert model.stages[1].conv2.conv.weight.shape == (256, 48, 5, 5)  # conv2 sees the 48 maps on its GPU
    lrn = model.stages[0].lrn
    # section 3.3: b = a / (k + alpha * sum over 5 neighbouring maps of a^2)^beta, k=2, alpha=1e-4, beta=0.75
    a = torch.randn(2, 8, 3, 3) * 30
    padded = F.pad(a.square(), (0, 0, 0, 0, 2, 2))
    energy = sum(padded[:, i : i + 8] for i in range(5))
    torch.testing.assert_close(lrn(a), a / (2 + 1e-4 * energy) ** 0.75)


@pytest.mark.parametrize("name", ["alexnet", "alexnet_lrn"])
def test_alexnet_fully_connected_head(name):
    model = archzoo.create_model(name).eval()
    x = sample_input(archzoo.model_card(name))
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features == 256
        assert model.forward_head(feats, pre_logits=True).shape == (2, 4096)
        model.reset_classifier(0)
        assert model(x).shape == (2, 4096)  # the penultimate features
        assert isinstance(model.get_classifier(), nn.Identity)
        model.reset_classifier(7)
        assert model(x).shape == (2, 7)
    # dropout on the hidden layers' inputs (torchvision) or outputs (the paper)
    order = [n for n in model.head.pre_logits._modules if n.startswith(("fc", "drop"))]
    assert order == (["drop1", "fc1", "drop2", "fc2"] if name == "alexnet" else ["fc1", "drop1", "fc2", "drop2"])


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_vgg_depth_counts_weight_layers_all_3x3(depth):
    with torch.device("meta"):
        model = archzoo.create_model(f"vgg{depth}_bn")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == depth
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert model.num_features == 512 and model.head_hidden_size == 4096
    assert model.feature_info.strides() == [1, 2, 4, 8, 16, 32]


# --- SqueezeNet ---------------------------------------------------------------------------------


def test_squeezenet_conv_head_and_fire():
    fire = Fire(96, 16, 64, 64)
    assert fire(torch.randn(1, 96, 9, 9)).shape == (1, 128, 9, 9)
    assert fire.squeeze.conv.kernel_size == (1, 1) and fire.expand.e3x3.conv.kernel_size == (3, 3)
    model = archzoo.create_model("squeezenet1_1").eval()
    x = sample_input(archzoo.model_card("squeezenet1_1"), size=48)
    with torch.no_grad():
        feats = model.forward_features(x)
        # class scores at every position, rectified, then averaged
        per_position = F.relu(model.head.fc(feats))
        torch.testing.assert_close(model(x), per_position.mean((2, 3)))
        model.reset_classifier(0)
        torch.testing.assert_close(model(x), feats.mean((2, 3)))


# --- GoogLeNet, Inception-v3: auxiliary classifiers and transform_input ---------------------------


@pytest.mark.parametrize("name, n_aux", [("googlenet", 2), ("inception_v3", 1)])
def test_auxiliary_logits_only_in_training(name, n_aux):
    card = archzoo.model_card(name)
    model = archzoo.create_model(name, num_classes=5)
    x = sample_input(card)
    out = model.train()(x)
    assert isinstance(out, AuxLogits) and len(out.aux) == n_aux
    assert out.logits.shape == (2, 5) and all(a.shape == (2, 5) for a in out.aux)
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    model.reset_classifier(3)
    assert all(a.shape == (2, 3) for a in model.train()(x).aux)
    model.reset_classifier(0)  # no classes: the auxiliary heads go too
    assert model.aux_heads is None and isinstance(model(x), torch.Tensor)

    plain = archzoo.create_model(name, aux_logits=False)
    assert not any(k.startswith("aux") for k in plain.state_dict())
    assert isinstance(plain.train()(x), torch.Tensor)


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_parameter_count_without_aux_matches_torchvision(name):
    with torch.device("meta"):
        import torchvision

        reference = torchvision.models.get_model(name, weights=None, aux_logits=False, init_weights=False)
        model = archzoo.create_model(name, aux_logits=False)
    assert n_params(model) == n_params(reference)


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_auxiliary_heads_match_torchvision(name):
    # each head on the map it sees at the reference input size (224 and 299)
    reference, model = converted(name)
    if name == "googlenet":
        heads = [(reference.aux1, (2, 512, 14, 14)), (reference.aux2, (2, 528, 14, 14))]
    else:
        heads = [(reference.AuxLogits, (2, 768, 17, 17))]
    for i, (theirs, shape) in enumerate(heads):
        x = torch.randn(shape)
        with torch.no_grad():
            assert max_rel_diff(theirs(x), model.aux_heads[i](x)) <= 1e-5


def test_googlenet_training_outputs_match_torchvision():
    # without dropout the training-mode forward (batch statistics, auxiliary heads) is deterministic
    reference, model = converted("googlenet", ref_kwargs=dict(dropout=0.0, dropout_aux=0.0), drop_rate=0.0, aux_drop_rate=0.0)
    x = sample_input(archzoo.model_card("googlenet"), size=64)
    want, got = reference.train()(x), model.train()(x)
    assert max_rel_diff(want.logits, got.logits) <= 1e-5
    assert max_rel_diff(want.aux_logits1, got.aux[0]) <= 1e-5  # torchvision orders them (logits, aux2, aux1)
    assert max_rel_diff(want.aux_logits2, got.aux[1]) <= 1e-5


@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_transform_input_matches_torchvision(name):
    reference, model = converted(name, ref_kwargs=dict(transform_input=True), transform_input=True)
    assert model.transform_input
    x = sample_input(archzoo.model_card(name), size=64)
    with torch.no_grad():
        assert max_rel_diff(reference(x), model(x)) <= 1e-5
    # equivalently: no transform, and inputs normalised with mean = std = 0.5
    plain = archzoo.create_model(name).eval()
    plain.load_state_dict(model.state_dict())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert max_rel_diff(model(x), plain((x * std + mean - 0.5) / 0.5)) <= 1e-5
    with pytest.raises(ValueError, match="in_chans=3"):
        archzoo.create_model(name, transform_input=True, in_chans=1)


def test_inception_v3_matches_timm():
    # timm's inception_v3 keeps Google's names, so the torchvision converter serves it too; with
    # aux_logits its auxiliary head runs in eval mode as well, which needs 299x299 input
    import timm

    sd = timm.create_model("inception_v3", pretrained=False, aux_logits=True).state_dict()
    archzoo.convert_weights("inception_v3", sd, "timm")  # checked against our model, aux head included
    reference, model = converted("inception_v3", source="timm", ref_kwargs=dict(aux_logits=False), aux_logits=False)
    assert n_params(model) == n_params(reference)
    x = sample_input(archzoo.model_card("inception_v3"))
    with torch.no_grad():
        assert max_rel_diff(reference(x), model(x)) <= 1e-5
        extractor = archzoo.create_model("inception_v3", features_only=True, aux_logits=False).eval()
        extractor.model.load_state_dict(model.state_dict(), strict=False)
        theirs = reference.forward_intermediates(x, intermediates_only=True)
        ours = extractor(x)
    assert [f.shape for f in ours] == [f.shape for f in theirs]
    assert all(max_rel_diff(a, b) <= 1e-5 for a, b in zip(theirs, ours))


def test_inception_v3_aux_pool_is_exact_at_299_and_works_below():
    pool = AvgPoolAtLeast(5, stride=3, min_size=5)
    x = torch.randn(2, 4, 17, 17)  # the 17x17 grid of a 299x299 input
    torch.testing.assert_close(pool(x), F.avg_pool2d(x, 5, stride=3))
    assert pool(torch.randn(2, 4, 3, 3)).shape == (2, 4, 5, 5)  # a 75x75 input's grid
    assert pool(torch.randn(2, 4, 20, 26)).shape == (2, 4, 6, 8)


def test_loading_torchvision_weights_for_other_classes_resets_every_classifier(tmp_path):
    import torchvision

    path = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(weights=None, init_weights=True).state_dict(), path)
    with pytest.warns(UserWarning, match="aux_heads.0.fc, aux_heads.1.fc"):
        model = archzoo.create_model("googlenet", num_classes=10, weights=path)
    out = model.train()(sample_input(archzoo.model_card("googlenet")))
    assert out.logits.shape == (2, 10) and all(a.shape == (2, 10) for a in out.aux)
