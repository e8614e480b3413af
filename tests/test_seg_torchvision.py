"""torchvision's segmenters (FCN-ResNet, DeepLab v3, Lite R-ASPP) rebuilt from archzoo's parts.

Each reference is built with random weights and randomised batch-norm statistics, its state dict
saved to a file and loaded by ``archzoo.create_model(name, weights=file)``; then our logits equal
torchvision's ``out`` in eval mode and ``AuxLogits(logits, (aux,))`` equals ``out`` and ``aux`` in
training mode (dropout drawn from the same seed: the masks only agree if the dropouts sit where
torchvision's do). Parameter counts equal torchvision's and its published ``num_params``; the
dilated backbones stride and dilate exactly as torchvision's; the heads work on another backbone.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

import archzoo
from archzoo.models.base import AuxLogits
from archzoo.segmentation.fcn_resnet import tapped_backbone
from archzoo.segmentation.heads import ASPP
from archzoo.weights import build_reference

from helpers import max_rel_diff, n_params, randomize_norms

TOL = 1e-5
FULL = ["fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]


def _input(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=FULL)
def pair(request, tmp_path_factory):
    """``(name, torchvision model, ours loaded from the torchvision file, the file)``, both in eval mode."""
    name = request.param
    torch.manual_seed(0)
    reference = randomize_norms(build_reference(archzoo.model_card(name).reference)).eval()
    path = tmp_path_factory.mktemp("weights") / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    return name, reference, archzoo.create_model(name, weights=str(path)).eval(), path


def test_eval_logits_equal_torchvision(pair):
    name, reference, ours, path = pair
    x = _input(1, 40, 48)  # not square: heights and widths must not be swapped anywhere
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == want["out"].shape == (1, 21, 40, 48)
    assert max_rel_diff(want["out"], got) <= TOL
    if name == "deeplabv3_mobilenet_v3_large":  # the lightest with an auxiliary head: built without it
        lean = archzoo.create_model(name, weights=str(path), aux_logits=False).eval()  # the file's aux tensors unused
        assert lean.aux_heads is None
        with torch.no_grad():
            assert max_rel_diff(want["out"], lean(x)) <= TOL
        assert isinstance(lean.train()(x.repeat(2, 1, 1, 1)), torch.Tensor)  # no auxiliary output to return


def test_train_mode_gives_aux_logits_equal_torchvision(pair):
    _, reference, ours, _ = pair
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in (reference, ours)]  # BN statistics move
    x = _input(2, 24, 32, seed=1)  # batch 2: the pooled branches' batch norms need two values per channel
    try:
        reference.train(), ours.train()
        with torch.no_grad():
            torch.manual_seed(3)
            want = reference(x)
            torch.manual_seed(3)
            got = ours(x)
    finally:
        for m, state in zip((reference, ours), saved, strict=True):
            m.load_state_dict(state)
            m.eval()
    if "aux" in want:
        assert isinstance(got, AuxLogits) and len(got.aux) == 1
        assert got.aux[0].shape == want["aux"].shape == (2, 21, 24, 32)
        assert max_rel_diff(want["aux"], got.aux[0]) <= TOL
        got = got.logits
    else:  # Lite R-ASPP has no auxiliary head
        assert isinstance(got, torch.Tensor)
    assert max_rel_diff(want["out"], got) <= TOL


def test_parameter_counts_equal_torchvision_and_its_published_count(pair):
    name, reference, ours, _ = pair
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]  # metadata: no download
    assert n_params(ours) == n_params(reference) == published


def _conv_geometry(module: nn.Module) -> list[tuple]:
    return [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.dilation, m.padding, m.groups)
            for m in module.modules() if isinstance(m, nn.Conv2d)]


def _check_structure(name: str, reference: nn.Module, ours: nn.Module) -> None:
    """Every convolution (backbone, head, auxiliary head, in order) has torchvision's widths, strides,
    dilations and padding (``replace_stride_with_dilation=[False, True, True]`` / ``dilated=True``,
    the ASPP's rates); the maps the heads read have torchvision's reductions."""
    assert _conv_geometry(ours) == _conv_geometry(reference)
    assert ours.backbone.feature_info.strides() == ([8, 8] if "resnet" in name else [8, 16])


def test_every_convolution_dilates_and_pads_as_torchvision(pair):
    name, reference, ours, _ = pair
    _check_structure(name, reference, ours)


@pytest.mark.parametrize("name", ["fcn_resnet101", "deeplabv3_resnet101"])
def test_resnet101_variants_match_torchvision_on_the_meta_device(name):
    """Their ResNet-50 siblings are compared number for number above; the 101-layer variants differ
    only in the backbone's depth, so here, on the meta device (no memory, no arithmetic): the same
    structure, every tensor converting to one of ours of the same shape, the same counts."""
    card = archzoo.model_card(name)
    with torch.device("meta"):
        reference = build_reference(card.reference)
        ours = archzoo.create_model(name)
    _check_structure(name, reference, ours)
    converted = archzoo.convert_weights(name, reference.state_dict(), check=False)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in ours.state_dict().items()}
    published = torchvision.models.get_model_weights(name).DEFAULT.meta["num_params"]
    assert n_params(ours) == n_params(reference) == published


def test_aspp_equals_torchvision_where_the_rates_reach_inside_the_map():
    """At the parity tests' tiny maps the large rates only see padding; here rates 1-3 on a 9x11 map."""
    from torchvision.models.segmentation.deeplabv3 import ASPP as TvASPP

    torch.manual_seed(0)
    theirs = randomize_norms(TvASPP(16, (1, 2, 3), out_channels=8)).eval()
    ours = ASPP(16, 8, rates=(1, 2, 3)).eval()
    renames = {"convs.4.1": "branches.4.conv.conv", "convs.4.2": "branches.4.conv.bn", "project.0": "project.conv",
               "project.1": "project.bn"}
    for i in range(4):
        renames.update({f"convs.{i}.0": f"branches.{i}.conv", f"convs.{i}.1": f"branches.{i}.bn"})
    ours.load_state_dict(_renamed(theirs.state_dict(), renames))
    x = torch.randn(2, 16, 9, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_rel_diff(theirs(x), ours(x)) <= TOL


def _renamed(state: dict, renames: dict) -> dict:
    out = {}
    for key, value in state.items():
        module, leaf = key.rsplit(".", 1)
        out[f"{renames[module]}.{leaf}"] = value
    return out


@pytest.mark.parametrize("name, kwargs, strides", [
    ("fcn_resnet50", dict(backbone="resnet18", output_stride=16), [16, 16]),
    ("deeplabv3_mobilenet_v3_large", dict(backbone="resnet18"), [8, 16]),  # first block of resnet18's stride-8 stage
    ("lraspp_mobilenet_v3_large", dict(backbone="mobilenet_v3_small"), [8, 16]),
])
def test_each_head_works_on_another_backbone(name, kwargs, strides):
    model = archzoo.create_model(name, num_classes=5, **kwargs)
    assert model.backbone.feature_info.strides() == strides
    x = _input(2, 32, 40)
    out = model.train()(x)
    logits = out.logits if isinstance(out, AuxLogits) else out
    assert logits.shape == (2, 5, 32, 40)
    assert all(a.shape == (2, 5, 32, 40) for a in getattr(out, "aux", ()))
    (logits.mean() + sum(a.mean() for a in getattr(out, "aux", ()))).backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        assert model.eval()(x[:1]).shape == (1, 5, 32, 40)


def test_aspp_separable_equals_smp():
    """The ASPP with separable branches (DeepLab v3+) equals segmentation_models_pytorch's, renamed."""
    from segmentation_models_pytorch.decoders.deeplabv3.decoder import ASPP as SmpASPP

    torch.manual_seed(0)
    theirs = randomize_norms(SmpASPP(32, 16, (2, 4, 6), separable=True, dropout=0.5)).eval()
    ours = ASPP(32, 16, rates=(2, 4, 6), separable=True).eval()
    renames = {"convs.0.0": "branches.0.conv", "convs.0.1": "branches.0.bn", "convs.4.1": "branches.4.conv.conv",
               "convs.4.2": "branches.4.conv.bn", "project.0": "project.conv", "project.1": "project.bn"}
    for i in (1, 2, 3):
        renames.update({f"convs.{i}.0.0": f"branches.{i}.depthwise.conv",
                        f"convs.{i}.0.1": f"branches.{i}.pointwise.conv", f"convs.{i}.1": f"branches.{i}.pointwise.bn"})
    ours.load_state_dict(_renamed(theirs.state_dict(), renames))
    assert n_params(ours) == n_params(theirs)
    x = torch.randn(2, 32, 9, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_rel_diff(theirs(x), ours(x)) <= TOL
    assert ours.branches[1].depthwise.conv.dilation == (2, 2) and ours.branches[1].depthwise.conv.groups == 32


def test_bad_arguments_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="aux_index"):
        archzoo.create_model("fcn_resnet50", backbone="resnet18", aux_index=-1)
    with pytest.raises(ValueError, match="low_index"):
        archzoo.create_model("lraspp_mobilenet_v3_large", low_index=-1)
    with pytest.raises(ValueError, match="atrous rates"):
        ASPP(8, 8, rates=(0, 2))
    with pytest.raises(ValueError, match="first block"):  # resnet18's first map is the stem's convolution
        tapped_backbone("resnet18", (0, -1), first_block=(0,))
    with pytest.raises(ValueError, match="out of range"):
        tapped_backbone("resnet18", (1, -1), first_block=(9,))
