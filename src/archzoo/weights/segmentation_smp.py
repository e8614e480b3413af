"""segmentation_models_pytorch (smp) state dicts: U-Net and DeepLabV3+ on zoo encoders.

smp keeps its encoder under ``encoder.``: for ``resnet*`` and ``mobilenet_v2`` a torchvision
network's own keys (``encoder.layer1.0.conv1.weight``, ``encoder.features.18.0.weight``), for
``tu-*`` a timm model's under ``encoder.model.``. Those go through the backbone classifier's
torchvision or timm converter (the card's ``backbone``, the reference's encoder name says which)
to our ``backbone.model.*``; the decoder and head are renamed by the tables below.

smp: ``decoder.blocks.i.conv1.0`` (conv) / ``.1`` (norm) -> ours ``decoder.blocks.i.conv1.conv`` /
``.bn``; DeepLabV3+'s ``decoder.aspp.0`` (the ASPP: ``convs.0`` 1x1, ``convs.1-3`` separable
``.0.0`` depthwise, ``.0.1`` pointwise, ``.1`` norm, ``convs.4`` pooling ``.1`` conv ``.2`` norm,
``project``), ``decoder.aspp.1/2`` (separable 3x3 and its norm), ``decoder.block1`` (48-channel
projection), ``decoder.block2`` (separable fusion) -> ours ``decoder.aspp.branches.*``,
``decoder.aspp_conv``, ``decoder.low_level``, ``decoder.fuse``; ``segmentation_head.0`` -> ``head``.
"""

from __future__ import annotations

from . import BN, KeyMap, StateDict, convert_weights, register_converter

_UNET = (
    (r"decoder\.blocks\.(\d+)\.conv(\d)\.0\.weight", r"decoder.blocks.\1.conv\2.conv.weight"),
    (rf"decoder\.blocks\.(\d+)\.conv(\d)\.1\.{BN}", r"decoder.blocks.\1.conv\2.bn.\3"),
)


def _separable(theirs: str, ours: str, norm: str) -> tuple[tuple[str, str], ...]:
    """Rules for smp's ``SeparableConv2d`` ``theirs`` (``.0`` depthwise, ``.1`` pointwise) and the
    ``norm`` after it to our :class:`~archzoo.segmentation.heads.SeparableConvNormAct` ``ours``."""
    return ((rf"{theirs}\.0\.weight", rf"{ours}.depthwise.conv.weight"),
            (rf"{theirs}\.1\.weight", rf"{ours}.pointwise.conv.weight"),
            (rf"{norm}\.{BN}", rf"{ours}.pointwise.bn.\1"))


_DEEPLABV3PLUS = (
    (r"decoder\.aspp\.0\.convs\.0\.0\.weight", r"decoder.aspp.branches.0.conv.weight"),
    (rf"decoder\.aspp\.0\.convs\.0\.1\.{BN}", r"decoder.aspp.branches.0.bn.\1"),
    (r"decoder\.aspp\.0\.convs\.([123])\.0\.0\.weight", r"decoder.aspp.branches.\1.depthwise.conv.weight"),
    (r"decoder\.aspp\.0\.convs\.([123])\.0\.1\.weight", r"decoder.aspp.branches.\1.pointwise.conv.weight"),
    (rf"decoder\.aspp\.0\.convs\.([123])\.1\.{BN}", r"decoder.aspp.branches.\1.pointwise.bn.\2"),
    (r"decoder\.aspp\.0\.convs\.4\.1\.weight", r"decoder.aspp.branches.4.conv.conv.weight"),
    (rf"decoder\.aspp\.0\.convs\.4\.2\.{BN}", r"decoder.aspp.branches.4.conv.bn.\1"),
    (r"decoder\.aspp\.0\.project\.0\.weight", r"decoder.aspp.project.conv.weight"),
    (rf"decoder\.aspp\.0\.project\.1\.{BN}", r"decoder.aspp.project.bn.\1"),
    *_separable(r"decoder\.aspp\.1", "decoder.aspp_conv", r"decoder\.aspp\.2"),
    (r"decoder\.block1\.0\.weight", r"decoder.low_level.conv.weight"),
    (rf"decoder\.block1\.1\.{BN}", r"decoder.low_level.bn.\1"),
    *_separable(r"decoder\.block2\.0", "decoder.fuse", r"decoder\.block2\.1"),
)

_HEAD = ((r"segmentation_head\.0\.(weight|bias)", r"head.\1"),)


def smp_converter(rules) -> callable:
    """A converter for an smp model: ``encoder.*`` through the backbone's own converter, the rest by ``rules``."""
    rest = KeyMap(tuple(rules) + _HEAD)

    def convert(state_dict: StateDict, model_name: str) -> StateDict:
        from ..registry import model_card

        card = model_card(model_name)
        encoder = card.reference_name.split("/", 1)[1] if card.reference_source == "smp" else ""
        source, prefix = ("timm", "encoder.model.") if encoder.startswith("tu-") else ("torchvision", "encoder.")
        body = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        stray = sorted(k for k in state_dict if k.startswith("encoder.") and not k.startswith(prefix))
        if stray:
            raise KeyError(f"encoder keys outside {prefix!r} (another encoder than {encoder!r}?): {stray[:3]}")
        out = {f"backbone.model.{k}": v
               for k, v in convert_weights(card.kwargs["backbone"], body, source, check=False).items()}
        out.update(rest({k: v for k, v in state_dict.items() if not k.startswith("encoder.")}, model_name))
        return out

    return convert


register_converter("encoder_unet", "smp", smp_converter(_UNET))
register_converter("deeplabv3plus", "smp", smp_converter(_DEEPLABV3PLUS))
