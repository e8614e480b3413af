"""U-Net and DeepLabV3+ on zoo encoders against segmentation_models_pytorch (smp).

Each smp reference is built with random weights (``encoder_weights=None``) and random batch-norm
statistics, its state dict saved to a ``.pth`` file and loaded with ``archzoo.create_model(name,
weights=file)`` (the smp layout is recognised by the converters): parameter counts equal, and in
eval mode the logits and every encoder map equal within 1e-5 of their scale.
"""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.segmentation.smp_unet import SmpEncoder
from archzoo.weights import build_reference

from helpers import max_rel_diff, n_params, randomize_norms

smp = pytest.importorskip("segmentation_models_pytorch")

TOL = 1e-5
SMP_MODELS = [n for n in archzoo.list_models(task="segmentation") if archzoo.model_card(n).reference_source == "smp"]


def _save(reference: torch.nn.Module, path) -> str:
    randomize_norms(reference).eval()
    torch.save(reference.state_dict(), path)
    return str(path)


def test_the_smp_variants_are_registered():
    assert set(SMP_MODELS) == {"unet_resnet18", "unet_resnet34", "unet_resnet50", "unet_mobilenet_v2",
                               "unet_efficientnet_b0", "deeplabv3plus_resnet50", "deeplabv3plus_resnet101",
                               "deeplabv3plus_mobilenet_v2"}


@pytest.mark.parametrize("name", SMP_MODELS)
def test_parameter_counts_and_every_tensor_convert(name):
    """All variants, on the meta device (no memory, no compute): smp's state dict converts to ours
    key for key and shape for shape, and the parameter counts are equal."""
    card = archzoo.model_card(name)
    with torch.device("meta"):
        reference = build_reference(card.reference)
        model = archzoo.create_model(name)
    assert reference.segmentation_head[0].out_channels == card.num_classes == 21  # the card's class count
    assert n_params(model) == n_params(reference)
    archzoo.convert_weights(name, reference.state_dict())  # checks keys and shapes against the model


def _check_parity(reference, model, x, maps: tuple[int, ...] = (1, 2, 3, 4, 5)):
    """Logits and the encoder maps (smp's list starts with the input itself) equal, so a misplaced
    stage or dilation shows even where the decoder would blur it."""
    with torch.no_grad():
        want, got = reference(x), model(x)
        ref_maps = [reference.encoder(x)[i] for i in maps]
        our_maps = model.backbone(x)
    assert got.shape == want.shape == (x.shape[0], model.num_classes, *x.shape[-2:])
    assert max_rel_diff(want, got) <= TOL
    assert [m.shape for m in our_maps] == [m.shape for m in ref_maps]
    assert all(max_rel_diff(a, b) <= TOL for a, b in zip(ref_maps, our_maps))


def _x(channels: int = 3, h: int = 64, w: int = 64) -> torch.Tensor:
    return torch.randn(2, channels, h, w, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def unet_resnet18_file(tmp_path_factory):
    torch.manual_seed(0)
    reference = build_reference("smp:Unet/resnet18")
    return reference, _save(reference, tmp_path_factory.mktemp("smp") / "unet_resnet18.pth")


def test_unet_resnet18_from_an_smp_file(unet_resnet18_file):
    reference, path = unet_resnet18_file
    _check_parity(reference, archzoo.create_model("unet_resnet18", weights=path).eval(), _x(h=96))


def test_unet_efficientnet_b0_from_an_smp_file(tmp_path):
    """smp's ``tu-efficientnet_b0``: timm's network under ``encoder.model``, through our timm converter."""
    torch.manual_seed(0)
    reference = build_reference("smp:Unet/tu-efficientnet_b0")
    model = archzoo.create_model("unet_efficientnet_b0", weights=_save(reference, tmp_path / "smp.pth")).eval()
    _check_parity(reference, model, _x())


def test_unet_mobilenet_v2_on_grey_input_from_an_smp_file(tmp_path):
    """smp ``in_channels=1`` against ``in_chans=1``; the last skip is MobileNetV2's 1280-wide head conv."""
    torch.manual_seed(0)
    reference = smp.Unet("mobilenet_v2", encoder_weights=None, in_channels=1, classes=2)
    model = archzoo.create_model("unet_mobilenet_v2", in_chans=1, num_classes=2,
                                 weights=_save(reference, tmp_path / "smp.pth")).eval()
    assert model.backbone.feature_info.channels()[-1] == 1280
    _check_parity(reference, model, _x(1, 96, 64))


def test_deeplabv3plus_mobilenet_v2_separable_aspp_with_rates_every_tap_sees(tmp_path):
    """At 64x64 the stride-16 map is 4x4, where rates 12, 24, 36 see only their centre tap: rates
    1, 2, 3 make every depthwise weight count."""
    torch.manual_seed(0)
    reference = smp.DeepLabV3Plus("mobilenet_v2", encoder_weights=None, classes=3, decoder_atrous_rates=(1, 2, 3))
    model = archzoo.create_model("deeplabv3plus_mobilenet_v2", num_classes=3, atrous_rates=(1, 2, 3),
                                 weights=_save(reference, tmp_path / "smp.pth")).eval()
    _check_parity(reference, model, _x(), maps=(2, 5))


def test_deeplabv3plus_on_a_resnet_dilated_by_smps_rule(tmp_path):
    """smp's ResNet encoders at output stride 16 (the card's rates 12, 24, 36); ResNet-18 keeps it
    cheap, ResNet-50/101 differ only in their blocks (converted and counted above)."""
    torch.manual_seed(0)
    reference = smp.DeepLabV3Plus("resnet18", encoder_weights=None, classes=21)
    model = archzoo.create_model("deeplabv3plus_resnet50", backbone="resnet18",
                                 weights=_save(reference, tmp_path / "smp.pth")).eval()
    _check_parity(reference, model, _x(), maps=(2, 5))


def test_smp_dilation_dilates_the_first_block_of_a_dilated_stage_too():
    """smp's encoders at output stride 16 dilate every 3x3 of the last stage by 2; torchvision
    keeps the first block's dilation 1."""
    with torch.device("meta"):
        encoder = SmpEncoder("resnet18", output_stride=16)
        plain = archzoo.create_model("resnet18", output_stride=16)
    assert encoder.feature_info.strides() == [2, 4, 8, 16, 16]
    last = encoder.model.stages[3]
    assert [b.conv1.conv.dilation for b in last] == [(2, 2), (2, 2)]
    assert [b.conv1.conv.dilation for b in plain.stages[3]] == [(1, 1), (2, 2)]


def test_mobilenet_v2_encoder_ends_with_the_head_conv():
    with torch.device("meta"):
        encoder = SmpEncoder("mobilenet_v2")
    assert encoder.feature_info.channels() == [16, 24, 32, 96, 1280]
    assert encoder.feature_info.strides() == [2, 4, 8, 16, 32]


def test_weights_of_another_encoder_are_refused(unet_resnet18_file):
    with pytest.raises(ValueError, match="does not fit unet_resnet34"):
        archzoo.create_model("unet_resnet34", weights=unet_resnet18_file[1])


def test_a_backbone_without_the_five_smp_strides_is_refused():
    with torch.device("meta"), pytest.raises(ValueError, match="strides"):
        archzoo.create_model("unet_resnet18", backbone="vgg11")
