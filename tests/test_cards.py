"""Cards describe architectures, weights records what weights were trained on; converters are keyed
by architecture; heads and input convolutions are declared, and checked here against the real
models; ``--freeze backbone`` freezes what the backbone contract names."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archzoo
from archzoo.engine.optim import apply_freeze
from archzoo.registry import IMAGENET_MEAN, IMAGENET_STD, model_card
from archzoo.weights import build_reference, convert_weights, sources_for


def _on_meta(name: str, **kwargs) -> nn.Module:
    """Built on the meta device: shapes without memory or arithmetic, so every model is cheap."""
    with torch.device("meta"):
        return archzoo.create_model(name, **kwargs).eval()


def _small_input(card, chans: int | None = None) -> torch.Tensor:
    c, h, w = card.min_input_size
    return torch.empty(1, chans or c, max(h, 32), max(w, 32), device="meta")


@pytest.mark.parametrize("name", archzoo.list_models())
def test_input_convs_are_exactly_the_convolutions_that_see_the_image(name):
    """Found by running the model: every Conv2d whose input is the image tensor itself."""
    card = model_card(name)
    if card.task == "graph":  # no convolution sees an image: the layer that sees the nodes' features stands in
        _check_graph_input_layer(card)
        return
    if card.family == "dpm":  # not a neural network: HOG (scikit-image) sees the image; its card names the filters
        assert card.input_convs == ("filters",) and hasattr(archzoo.create_model(name), "filters")
        return
    model = _on_meta(name)
    x = _small_input(card)
    seen = []
    for path, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(lambda mod, inp, path=path: seen.append(path) if inp[0] is x else None)
    if hasattr(model, "forward_valid"):  # the unpadded U-Net: forward mirror-pads first; its network proper
        x = torch.empty(1, x.shape[1], 188, 188, device="meta")  # needs a valid tile (188 -> 4 px)
    with torch.no_grad():  # a detector's network proper: its transform resizes the image first
        getattr(model, "forward_valid", getattr(model, "forward_batch", model))(x)
    assert sorted(set(seen)) == sorted(card.input_convs)


def _check_graph_input_layer(card) -> None:
    """A graph model (archzoo.graph) turns the image into a superpixel graph inside forward (SLIC, on real
    pixels, so not on the meta device): its ``input_convs`` name exactly the layers fed the node features."""
    model = archzoo.create_model(card.name).eval()
    graph = model.to_graphs(torch.rand(1, *card.input_size))
    seen = []
    for path, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_pre_hook(lambda mod, inp, path=path: seen.append(path) if inp[0] is graph.x else None)
    with torch.no_grad():
        model(graph)
    assert sorted(set(seen)) == sorted(card.input_convs)


@pytest.mark.parametrize("name", archzoo.list_models())
def test_heads_are_the_layers_whose_width_is_the_class_count(name):
    card = model_card(name)
    if card.task in ("style_transfer", "super_resolution"):  # a picture out, no classes: a class count is refused
        with pytest.raises(ValueError, match="num_classes"):
            _on_meta(name, num_classes=7)
        return
    model = _on_meta(name, num_classes=7)
    present = [h for h in card.heads if any(k.startswith(h + ".") for k in model.state_dict())]
    assert present and present[0] == card.heads[0]  # the main classifier is always built
    other = _on_meta(name, num_classes=9).state_dict()
    for h in present:  # C outputs; a detector's A * C or A * (C + 1) (per anchor, maybe a background logit)
        w7 = next(t for t in model.get_submodule(h).state_dict().values()).shape[0]
        w9 = next(v for k, v in other.items() if k.startswith(h + ".")).shape[0]
        per_anchor, rest = divmod(w9 - w7, 2)
        assert rest == 0 and per_anchor >= 1 and w7 in (7 * per_anchor, 8 * per_anchor), (h, w7, w9)
        assert (per_anchor, w7) == (1, 7) or card.task == "detection", h
    # no other tensor depends on the class count
    changed = {k.rsplit(".", 1)[0] for k, v in model.state_dict().items() if v.shape != other[k].shape}
    assert changed == set(present)


def _reference_normalisation(reference: str) -> tuple[tuple, tuple, int, str]:
    """``(mean, std, classes, dataset)`` that the reference's published weights were trained with."""
    source, ref = reference.split(":", 1)
    if source == "torchvision":
        import torchvision

        w = torchvision.models.get_model_weights(ref).DEFAULT  # metadata only: nothing is downloaded
        if ref in torchvision.models.list_models(torchvision.models.segmentation):  # COCO images, the VOC classes
            t = w.transforms()
            return tuple(t.mean), tuple(t.std), len(w.meta["categories"]), "COCO"
        if ref not in torchvision.models.list_models(torchvision.models.detection):
            t = w.transforms()
            return tuple(t.mean), tuple(t.std), len(w.meta["categories"]), "ImageNet-1k"
        # a detector normalises inside the model (its GeneralizedRCNNTransform)
        transform = build_reference(reference).transform
        return tuple(transform.image_mean), tuple(transform.image_std), len(w.meta["categories"]), "COCO"
    if source == "smp":  # smp publishes encoder weights only (ImageNet-normalised), no segmentation classes
        return IMAGENET_MEAN, IMAGENET_STD, None, ""
    if source == "effdet":
        import effdet

        cfg = effdet.get_efficientdet_config(ref)
        return IMAGENET_MEAN, IMAGENET_STD, cfg.num_classes, "COCO"
    import timm

    cfg = timm.models.get_pretrained_cfg(ref)
    return tuple(cfg.mean), tuple(cfg.std), cfg.num_classes, "ImageNet-1k"


@pytest.mark.parametrize("name", [n for n in archzoo.list_models() if model_card(n).reference])
def test_default_weights_record_matches_what_the_reference_weights_were_trained_with(name):
    card = model_card(name)
    mean, std, classes, dataset = _reference_normalisation(card.reference)
    record = card.default_weights
    assert record.mean == pytest.approx(mean) and record.std == pytest.approx(std)
    assert classes is None or (record.num_classes == classes and dataset in record.dataset)


def test_cifar_networks_record_cifar10_and_the_card_keeps_only_the_architecture():
    card = model_card("resnet20")
    assert card.default_weights.dataset == "CIFAR-10" and card.default_weights.num_classes == 10
    d = card.to_dict()
    assert {"mean", "std", "num_classes"}.isdisjoint(d)  # those describe weights, not the architecture
    assert d["default_weights"]["mean"] == pytest.approx([0.4914, 0.4822, 0.4465])


def test_converters_are_keyed_by_architecture_not_family_name():
    """``wide_resnet`` names torchvision's Wide ResNets and the CIFAR pre-activation WRNs."""
    assert model_card("wide_resnet50_2").family == model_card("wrn16_4").family == "wide_resnet"
    assert model_card("wide_resnet50_2").arch == "resnet" and model_card("wrn16_4").arch == "preact_resnet"
    assert "torchvision" in sources_for(model_card("wide_resnet50_2").arch)
    assert "torchvision" not in sources_for(model_card("wrn16_4").arch)
    import torchvision

    tv_state = torchvision.models.resnet18().state_dict()
    with pytest.raises(ValueError, match="no torchvision converter for wrn16_4"):
        convert_weights("wrn16_4", tv_state, "torchvision")


def test_a_torchvision_resnet_file_is_refused_by_a_cifar_wrn(tmp_path):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError) as err:
        archzoo.create_model("wrn16_4", weights=path)
    assert "does not fit wrn16_4" in str(err.value) and "as torchvision" not in str(err.value)
    archzoo.create_model("resnet18", weights=path)  # the same file fits the architecture it was made for


def test_input_conv_adaptation_covers_every_fractalnet_column(tmp_path):
    """FractalNet's three columns each convolve the image: all three adapt to one channel."""
    rgb = archzoo.create_model("fractalnet")
    path = tmp_path / "fractal.safetensors"
    archzoo.save_model(rgb, path)
    grey = archzoo.create_model("fractalnet", in_chans=1, weights=path).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb.eval()(x.expand(-1, 3, -1, -1)), atol=1e-4)


def test_freeze_backbone_freezes_the_backbone_contract_not_all_but_the_classifier():
    model = archzoo.create_model("mobilenet_v2", num_classes=5)
    apply_freeze(model, "backbone")
    kept = set(archzoo.features_from(model).model.state_dict())  # what features_only keeps
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n in kept}
    # MobileNetV2's 1x1 head convolution comes after the last feature map: it trains with the classifier
    assert {n.split(".")[0] for n in trainable} == {"conv_head", "head"}


def test_freeze_backbone_leaves_a_composed_models_neck_trainable():
    class Composed(nn.Module):  # the shape detectors and segmenters take: backbone + neck + head
        def __init__(self):
            super().__init__()
            self.backbone = archzoo.create_model("resnet20", features_only=True)
            self.neck = nn.Conv2d(64, 16, 1)
            self.head = nn.Conv2d(16, 3, 1)

    model = Composed()
    trainable = apply_freeze(model, "backbone")
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in (*model.neck.parameters(), *model.head.parameters()))
    assert trainable == sum(p.numel() for p in (*model.neck.parameters(), *model.head.parameters()))


def test_shipped_weights_records_say_what_their_files_hold():
    """A record is typed by hand; the file's own metadata (written by the engine) is the oracle."""
    from archzoo.checkpoint import read_metadata
    from archzoo.shipped import list_shipped, shipped_weights_path

    for record in list_shipped():
        meta = read_metadata(shipped_weights_path(record.model, record.tag))
        assert meta["model"] == record.model
        assert meta["num_classes"] == record.num_classes
        assert tuple(meta["input_size"]) == record.input_size
        assert meta["mean"] == pytest.approx(list(record.mean)) and meta["std"] == pytest.approx(list(record.std))
        assert tuple(meta["class_names"]) == record.class_names


def _one_per_family() -> list[str]:
    first: dict[str, str] = {}
    for name in archzoo.list_models():
        first.setdefault(model_card(name).family, name)
    return sorted(first.values())


@pytest.mark.parametrize("name", _one_per_family())
def test_info_and_compare_measure_one_model_of_every_family(name):
    """``archzoo info`` / ``compare`` / ``models`` measure every model: parameters, and GFLOPs where
    the model is a tensor graph (the DPM is not: None, printed as "no GFLOPs"). They crashed on the
    first model of a new kind that the FLOP counter could not run."""
    from archzoo.cli.compare import compare
    from archzoo.cli.info import model_info

    info = model_info(name)
    assert info["params"] > 0 and info["name"] == name
    assert (info["gflops"] is None) == (name.startswith("dpm")) and (info["gflops"] is None or info["gflops"] > 0)
    row = compare([name], latency=False)[0]
    assert row["params"] == info["params"] and row["gflops"] == info["gflops"]


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "ssdlite320_mobilenet_v3_large", "unet"])
def test_info_command_prints_the_card_and_its_measured_size(name, capsys):
    """``archzoo info`` in text and JSON: the default weights' normalisation and class count, the
    parameter count archzoo.profile measures, and every trick of the card."""
    import json

    from test_robustness_helpers import run_cli

    from archzoo.profile import model_stats

    card = model_card(name)
    rc, out, err = run_cli(["info", name, "--json"], capsys)
    assert rc == 0, err
    info = json.loads(out)
    assert info["mean"] == list(card.mean) and info["std"] == list(card.std)
    assert info["num_classes"] == card.num_classes and info["params"] == model_stats(name)["params"]
    rc, out, err = run_cli(["info", name], capsys)
    assert rc == 0, err
    assert f"mean {tuple(card.mean)}" in out and f"{card.num_classes} classes" in out
    assert f"{info['params'] / 1e6:.2f}M parameters" in out
    assert all(t in out for t in card.tricks)
