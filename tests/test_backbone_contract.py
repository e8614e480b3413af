"""The backbone contract every family honours (``features_only``), and the backbone options.

A backbone holds only what it runs: its maps are exactly what the classifier's
``forward_features`` computes, an early ``out_indices`` leaves no parameter without a gradient (so
DDP needs no ``find_unused_parameters``), and it compiles with ``fullgraph=True`` and exports
(``torch.export``, ONNX). ``output_stride`` dilates as torchvision and timm do, frozen batch norm
stays frozen, and ``features_only`` never changes a model the caller holds.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torchvision.ops import FrozenBatchNorm2d

import archzoo
from archzoo.layers import OutputStride, linear_drop_path

from helpers import build_reference, n_params, randomize_norms

# one small representative per family: (model, architecture arguments that shrink it)
REPRESENTATIVES = {
    "alexnet": ("alexnet", dict(hidden=(8, 8))),
    "vgg": ("vgg11", dict(hidden=(8, 8))),
    "lenet": ("lenet5", {}),
    "squeezenet": ("squeezenet1_1", {}),
    "googlenet": ("googlenet", dict(transform_input=True)),
    "inception_v3": ("inception_v3", dict(aux_logits=False)),
    "inception_v4": ("inception_v4", dict(depths=(1, 1, 1))),
    "inception_resnet_v2": ("inception_resnet_v2", dict(depths=(1, 1, 2))),
    "resnet": ("resnet18", dict(layers=(1, 1, 1, 1))),
    "resnext": ("resnext50_32x4d", dict(layers=(1, 1, 1, 1))),
    "wide_resnet": ("wrn16_4", dict(layers=(1, 1, 1))),
    "senet": ("senet154", dict(layers=(1, 1, 1, 1), stem_width=32, groups=8)),
    "preact_resnet": ("preact_resnet50", dict(layers=(1, 1, 1, 1))),
    "densenet": ("densenet121", dict(block_config=(1, 1, 1, 1))),
    "fractalnet": ("fractalnet", dict(num_columns=2, widths=(8, 8, 8, 8, 8))),
    "cspnet": ("cspdarknet53", dict(depths=(1, 1, 1, 1, 1))),
    "mobilenet_v2": ("mobilenet_v2_035", {}),
    "efficientnet": ("efficientnet_b0", dict(depth_mult=0.5)),
    "mobilenet_v3": ("mobilenet_v3_small", {}),
    "cspdarknet": ("cspdarknet_v8n", {}),
    "nasnet": ("nasnetalarge", dict(num_normal=1, penultimate_filters=96, stem_width=8)),
    "pnasnet": ("pnasnet5large", dict(cells_per_stage=2, filters=8, stem_width=8)),
    "snet": ("snet49", dict(repeats=(1, 2, 1))),
    "spinenet": ("spinenet49", dict(filter_scale=0.25, endpoint_chs=32)),
    "spiking": ("spiking_lenet5", dict(num_steps=2)),
    "amoebanet": ("amoebanet_a_cifar", dict(num_normal=1, filters=8, stem_width=24)),
}
# scale-permuted nets (SpineNet) are not a chain: the classifier pools the average of all output
# levels (not the last map), and the searched block order computes an early output level's block
# before a later one's inputs, so a backbone cut at P4 still holds (and runs) the P3 block
NOT_A_CHAIN = {"spinenet"}
FAMILIES = sorted(REPRESENTATIVES)
# torch.compile / torch.export cost seconds per family on a CPU: one family per model class (its
# forward and blocks); the families left out share their class with one that is in:
# googlenet, inception_v3 (AuxNet: a chain of ConcatBranches blocks, as inception_v4, after an affine
# input transform), inception_resnet_v2 (InceptionNet, as inception_v4),
# resnext, senet (ResNet), wide_resnet (PreActResNet), mobilenet_v2 (MobileNet, as efficientnet),
# pnasnet and amoebanet (CellNet and its cells, as nasnet). Each of them passed when checked once by hand.
COMPILED = ["alexnet", "cspnet", "densenet", "efficientnet", "fractalnet", "inception_v4", "lenet",
            "mobilenet_v3", "nasnet", "preact_resnet", "resnet", "squeezenet", "vgg"]


def _build(family: str, **extra) -> tuple[str, dict]:
    name, kwargs = REPRESENTATIVES[family]
    return name, {"num_classes": 10, **kwargs, **extra}


def _input(name: str, batch: int = 2, seed: int = 0) -> torch.Tensor:
    c, h, w = archzoo.model_card(name).min_input_size
    return torch.randn(batch, c, max(h, 32), max(w, 32), generator=torch.Generator().manual_seed(seed))


def _hooked_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The maps ``feature_info`` names, captured by hooks while ``forward_features`` runs."""
    modules, seen = dict(model.named_modules()), {}
    names = model.feature_info.modules()
    hooks = [modules[n].register_forward_hook(lambda m, i, out, n=n: seen.setdefault(n, out)) for n in names]
    try:
        with torch.no_grad():
            model.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    return [seen[n] for n in names]


def test_every_family_has_a_representative():
    families = {archzoo.model_card(n).family for n in archzoo.list_models(task="classification")}
    assert families == set(REPRESENTATIVES), "add the new family to REPRESENTATIVES"


@pytest.mark.parametrize("family", FAMILIES)
def test_backbone_computes_the_classifiers_maps_and_keeps_only_what_runs(family):
    name, kwargs = _build(family)
    torch.manual_seed(0)
    model = randomize_norms(archzoo.create_model(name, **kwargs)).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = _input(name)
    with torch.no_grad():
        logits = model(x)
    want = _hooked_maps(model, x)

    backbone = archzoo.features_from(model).eval()
    with torch.no_grad():
        got = backbone(x)
    assert [m.shape for m in got] == [m.shape for m in want]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the names are paths in the backbone, which has no hooks and no classifier
    for entry, fmap in zip(backbone.feature_info, got):
        backbone.model.get_submodule(entry["module"])
        assert fmap.shape[1] == entry["channels"]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in backbone.modules())
    assert not any(k.startswith(model.card.classifier + ".") for k in backbone.model.state_dict())
    # the last map is normalised like forward_features' output: where the widths agree, it is that output
    if backbone.feature_info[-1]["channels"] == model.num_features and family not in NOT_A_CHAIN:
        with torch.no_grad():
            torch.testing.assert_close(got[-1], model.forward_features(x), rtol=0, atol=0)
    # the caller's model is unchanged and still classifies the same
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits, rtol=0, atol=0)
    # and the backbone is a copy: changing it does not change the model
    with torch.no_grad():
        next(backbone.parameters()).add_(1.0)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    # a backbone stopping early holds nothing it does not run: every parameter gets a gradient
    if family in NOT_A_CHAIN:
        return
    early = archzoo.features_from(model, out_indices=(1,)).train()
    maps = early(x)
    assert len(maps) == 1 and early.feature_info == backbone.feature_info[1:2]
    maps[0].mean().backward()
    unused = [n for n, p in early.named_parameters() if p.grad is None]
    assert not unused, f"{name}: parameters built but not run: {unused[:5]}"
    assert n_params(early) < n_params(backbone)


@pytest.mark.parametrize("family", COMPILED)
def test_backbone_compiles_without_graph_breaks_and_exports(family):
    """``fullgraph=True`` fails on any graph break; the eager backend keeps it fast (no inductor)."""
    name, kwargs = _build(family)
    torch.manual_seed(0)
    backbone = archzoo.create_model(name, features_only=True, **kwargs).eval()
    x = _input(name, batch=1)
    with torch.no_grad():
        want = backbone(x)
        torch._dynamo.reset()
        compiled = torch.compile(backbone, fullgraph=True, backend="eager")(x)
        exported = torch.export.export(backbone, (x,)).module()(x)
    for a, b, c in zip(want, compiled, exported):
        torch.testing.assert_close(b, a)
        torch.testing.assert_close(c, a)


@pytest.mark.parametrize("family", ["resnet", "fractalnet"])
def test_backbone_exports_to_onnx(family, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is checked with onnxruntime (the test extra)")
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (the test extra)")
    name, kwargs = _build(family)
    torch.manual_seed(0)
    backbone = archzoo.create_model(name, features_only=True, **kwargs).eval()
    x = _input(name, batch=1)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(backbone, (x,), str(path), dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = backbone(x)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(a), b, rtol=1e-4, atol=1e-4)


# --- DDP ---------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial weights on both ranks
        backbone = archzoo.create_model("resnet18", features_only=True, out_indices=(1,), layers=(1, 1, 1, 1))
        ddp = nn.parallel.DistributedDataParallel(backbone)  # no find_unused_parameters
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for step in range(2):  # an unused parameter fails the second iteration
            x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(10 * rank + step))
            opt.zero_grad()
            ddp(x)[0].square().mean().backward()
            opt.step()
        torch.save({k: v.detach() for k, v in backbone.named_parameters()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_a_truncated_backbone_trains_under_ddp_without_find_unused_parameters(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "weights")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    first, second = (torch.load(f"{out}.{r}", weights_only=True) for r in range(2))
    torch.manual_seed(0)
    start = dict(archzoo.create_model("resnet18", features_only=True, out_indices=(1,), layers=(1, 1, 1, 1)).named_parameters())
    assert first.keys() == second.keys() == start.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)  # averaged gradients: the ranks agree
    assert not torch.equal(first["model.stem.conv.conv.weight"], start["model.stem.conv.conv.weight"])  # it trained


# --- features_only from checkpoints, selection by stride ------------------------------------------


def test_features_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = randomize_norms(archzoo.create_model("resnet18", num_classes=4)).eval()
    path = tmp_path / "r18.safetensors"
    archzoo.save_model(model, path, class_names=list("abcd"))
    loaded, _ = archzoo.load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        logits = loaded(x)
        a = archzoo.features_from(loaded, out_strides=(8, 16))(x)
        b = archzoo.create_model("resnet18", features_only=True, out_strides=(8, 16), weights=path).eval()(x)
        c = archzoo.features_from(model, out_indices=(2, 3))(x)
        assert torch.equal(loaded(x), logits)  # still the classifier it was
    for maps in (b, c):
        assert all(torch.equal(p, q) for p, q in zip(a, maps))


def test_out_strides_select_by_reduction_and_errors_name_the_argument():
    small = dict(layers=(1, 1, 1, 1))
    f = archzoo.create_model("resnet50", features_only=True, out_strides=(8, 16, 32), **small)
    assert f.out_indices == (2, 3, 4) and f.feature_info.channels() == [512, 1024, 2048]
    dilated = archzoo.create_model("resnet50", features_only=True, output_stride=8, out_strides=(4, 8), **small)
    assert dilated.feature_info.strides() == [4, 8] and dilated.feature_info.channels() == [256, 2048]  # the deepest
    with pytest.raises(ValueError, match=r"out_strides \[16, 32\].*available strides: \[2, 4, 8\]"):
        archzoo.create_model("resnet50", features_only=True, output_stride=8, out_strides=(8, 16, 32), **small)
    with pytest.raises(ValueError, match="out_indices"):
        archzoo.create_model("resnet18", features_only=True, out_indices=())
    with pytest.raises(ValueError, match="out_indices"):
        archzoo.features_from(archzoo.create_model("resnet18"), out_indices=())
    with pytest.raises(ValueError, match=r"out_indices \[5\] out of range"):
        archzoo.create_model("resnet18", features_only=True, out_indices=(5,))
    with pytest.raises(ValueError, match="out_indices must select increasing"):
        archzoo.create_model("resnet18", features_only=True, out_indices=(2, 1))
    with pytest.raises(ValueError, match="out_indices or out_strides"):
        archzoo.create_model("resnet18", features_only=True, out_indices=(1,), out_strides=(8,))
    with pytest.raises(ValueError, match="only meaningful with features_only"):
        archzoo.create_model("resnet18", out_strides=(8,))


# --- output_stride ----------------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride, dilate", [(8, [False, True, True]), (16, [False, False, True])])
def test_dilated_resnet50_equals_torchvisions(output_stride, dilate):
    import torchvision
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    reference = randomize_norms(torchvision.models.resnet50(replace_stride_with_dilation=dilate)).eval()
    model = archzoo.create_model("resnet50", output_stride=output_stride).eval()
    model.load_state_dict(archzoo.convert_weights("resnet50", reference.state_dict()))
    x = torch.randn(1, 3, 64, 64)
    nodes = ["relu", "layer1", "layer2", "layer3", "layer4"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
        theirs = list(create_feature_extractor(reference, nodes)(x).values())
        ours = archzoo.features_from(model)(x)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # feature_info reports the true reduction of each map
    assert model.feature_info.strides() == [2, 4, 8, 16 if output_stride == 16 else 8, output_stride]
    assert [64 // m.shape[-1] for m in ours] == model.feature_info.strides()


@pytest.mark.parametrize("name, timm_name", [("mobilenet_v2", "mobilenetv2_100"), ("efficientnet_b0", "efficientnet_b0")])
def test_dilated_mobile_nets_equal_timms(name, timm_name):
    """torchvision has no dilated MobileNetV2/EfficientNet; timm's ``output_stride`` applies the same rule."""
    import timm

    torch.manual_seed(0)
    reference = randomize_norms(timm.create_model(timm_name, pretrained=False, output_stride=8)).eval()
    model = archzoo.create_model(name, output_stride=8).eval()
    model.load_state_dict(archzoo.convert_weights(name, reference.state_dict(), "timm"))
    plain = archzoo.create_model(name).eval()
    plain.load_state_dict(model.state_dict())  # dilation changes no weight
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
        ours, undilated = archzoo.features_from(model)(x), archzoo.features_from(plain)(x)
    assert model.feature_info.strides() == [2, 4, 8, 8, 8] and plain.feature_info.strides() == [2, 4, 8, 16, 32]
    assert [64 // m.shape[-1] for m in ours] == [2, 4, 8, 8, 8]
    for a, b in zip(ours[:3], undilated[:3]):  # up to stride 8 nothing changed
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_output_stride_follows_torchvisions_rule():
    """The layer that loses its stride keeps the previous dilation; the layers after it use the new one."""
    s = OutputStride(8, stride=4)
    assert [s(2), s(1), s(2), s(1), s(2), s(1)] == [(2, 1), (1, 1), (1, 1), (1, 2), (1, 2), (1, 4)]
    assert s.stride == 8 and s.dilation == 4
    model = archzoo.create_model("resnet50", output_stride=8)
    assert [b.conv2.conv.dilation[0] for b in model.stages[2]] == [1] + [2] * 5
    assert [b.conv2.conv.dilation[0] for b in model.stages[3]] == [2, 4, 4]
    assert model.stages[3][0].shortcut.conv.stride == (1, 1)
    basic = archzoo.create_model("resnet18", output_stride=16)
    assert [(b.conv1.conv.dilation[0], b.conv2.conv.dilation[0]) for b in basic.stages[3]] == [(1, 2), (2, 2)]


def test_output_stride_errors_are_clear():
    with pytest.raises(ValueError, match=r"output_stride=12 is not reachable.*\[4, 8, 16, 32\]"):
        archzoo.create_model("resnet50", output_stride=12)
    with pytest.raises(ValueError, match=r"output_stride=8 is not reachable.*\[1, 2, 4\]"):
        archzoo.create_model("resnet20", output_stride=8)  # a CIFAR net reduces 4 times at most
    with pytest.raises(ValueError, match="densenet121.*output_stride"):  # never accepted and ignored
        archzoo.create_model("densenet121", output_stride=8)
    with pytest.raises(ValueError, match="vgg11.*norm_layer"):
        archzoo.create_model("vgg11", norm_layer="frozen_batchnorm")
    with pytest.raises(ValueError, match="norm_layer must be one of"):
        archzoo.create_model("resnet18", norm_layer="layernorm")


# --- norm_layer -----------------------------------------------------------------------------------


def test_frozen_batchnorm_changes_nothing_in_training():
    torch.manual_seed(0)
    model = archzoo.create_model("resnet18", norm_layer="frozen_batchnorm", layers=(1, 1, 1, 1), num_classes=3).train()
    norms = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(norms) == 12 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not [p for m in norms for p in m.parameters()]  # statistics and affine are buffers
    with torch.no_grad():
        for m in norms:
            for b in m.buffers():
                b.copy_(torch.rand_like(b) + 0.5)
    frozen = {f"{i}.{k}": v.clone() for i, m in enumerate(norms) for k, v in m.state_dict().items()}
    conv = model.stem.conv.conv.weight.clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean().backward()
        opt.step()
    assert all(torch.equal(v, frozen[f"{i}.{k}"]) for i, m in enumerate(norms) for k, v in m.state_dict().items())
    assert not torch.equal(model.stem.conv.conv.weight, conv)  # the rest trained


def test_torchvision_weights_load_into_a_frozen_batchnorm_resnet(tmp_path):
    torch.manual_seed(0)
    reference = randomize_norms(build_reference("torchvision:resnet18")).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # with num_batches_tracked, which frozen batch norm lacks
    model = archzoo.create_model("resnet18", norm_layer="frozen_batchnorm", weights=path).train()
    x = torch.randn(2, 3, 64, 64)
    backbone = archzoo.create_model("resnet18", features_only=True, norm_layer="frozen_batchnorm", weights=path).train()
    with torch.no_grad():  # in training mode too: frozen batch norm is evaluation-mode batch norm
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(backbone(x)[-1], reference.layer4(reference.layer3(reference.layer2(
            reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x)))))))), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2_035", "efficientnet_b0"])
def test_group_norm_uses_gcd_32_groups(name):
    model = archzoo.create_model(name, norm_layer="groupnorm").train()
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())
    assert all(m.num_groups == math.gcd(32, m.num_channels) for m in norms)
    assert {m.num_groups for m in norms} >= ({32} if name == "resnet18" else {8, 16})
    model(torch.randn(1, 3, 32, 32)).sum().backward()  # one image is enough for group statistics


# --- stochastic depth -----------------------------------------------------------------------------


def test_stochastic_depth_follows_each_reference():
    import timm

    assert [linear_drop_path(0.3, i, 4) for i in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [linear_drop_path(0.4, i, 4, endpoint=False) for i in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    with torch.device("meta"):  # timm's ResNet: rate * i / (n - 1), the last block drops with the full rate
        theirs = timm.create_model("resnet50", drop_path_rate=0.2)
        ours = archzoo.create_model("resnet50", drop_path_rate=0.2)
    want = [getattr(b.drop_path, "drop_prob", 0.0) for stage in (theirs.layer1, theirs.layer2, theirs.layer3, theirs.layer4)
            for b in stage]
    got = [getattr(b.drop_path, "p", 0.0) for stage in ours.stages for b in stage]
    assert got == pytest.approx(want, abs=1e-12) and got[-1] == pytest.approx(0.2)
