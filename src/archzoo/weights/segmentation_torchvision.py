"""torchvision's segmenters (FCN, DeepLab v3, Lite R-ASPP): the backbone through its classifier's own
torchvision converter, the heads through the renames below.

torchvision: ``backbone.*`` (the ResNet's ``conv1`` ... ``layer4``, or MobileNetV3's ``features``
numbered ``backbone.0`` ... ``backbone.16``), ``classifier.*`` (the head, an ``nn.Sequential``) and
``aux_classifier.*`` (an FCNHead); ours: ``backbone.model.*``, ``head.*``, ``aux_heads.0.*``.
"""

from __future__ import annotations

from . import BN, KeyMap, StateDict, convert_weights, register_converter


def _fcn_head(prefix: str) -> tuple:
    """FCNHead: 0 conv 3x3, 1 bn, (2 relu, 3 dropout), 4 classifier."""
    p = prefix.replace(".", r"\.")
    return ((rf"{p}\.0\.weight", rf"{prefix}.conv.conv.weight"),
            (rf"{p}\.1\.{BN}", rf"{prefix}.conv.bn.\1"),
            (rf"{p}\.4\.(weight|bias)", rf"{prefix}.classifier.\1"))


# DeepLabHead: 0 ASPP (convs 0..3: conv, bn; convs 4: pool, conv, bn; project: conv, bn), 1 conv 3x3, 2 bn, 4 classifier
_DEEPLAB_HEAD = (
    (r"head\.0\.convs\.([0-3])\.0\.weight", r"head.aspp.branches.\1.conv.weight"),
    (rf"head\.0\.convs\.([0-3])\.1\.{BN}", r"head.aspp.branches.\1.bn.\2"),
    (r"head\.0\.convs\.4\.1\.weight", r"head.aspp.branches.4.conv.conv.weight"),
    (rf"head\.0\.convs\.4\.2\.{BN}", r"head.aspp.branches.4.conv.bn.\1"),
    (r"head\.0\.project\.0\.weight", r"head.aspp.project.conv.weight"),
    (rf"head\.0\.project\.1\.{BN}", r"head.aspp.project.bn.\1"),
    (r"head\.1\.weight", r"head.conv.conv.weight"),
    (rf"head\.2\.{BN}", r"head.conv.bn.\1"),
    (r"head\.4\.(weight|bias)", r"head.classifier.\1"),
)

# LRASPPHead: cbr (conv, bn), scale (pool, conv, sigmoid), low_classifier, high_classifier
_LRASPP_HEAD = (
    (r"head\.cbr\.0\.weight", r"head.branch.conv.weight"),
    (rf"head\.cbr\.1\.{BN}", r"head.branch.bn.\1"),
    (r"head\.scale\.1\.weight", r"head.gate.conv.weight"),
    (r"head\.(low|high)_classifier\.(weight|bias)", r"head.\1_classifier.\2"),
)


def _converter(head_rules):
    heads = KeyMap(tuple(head_rules))

    def convert(state_dict: StateDict, model_name: str) -> StateDict:
        from ..registry import model_card

        backbone = model_card(model_name).kwargs["backbone"]
        body, rest = {}, {}
        for key, value in state_dict.items():
            if key.startswith("backbone."):
                key = key[len("backbone."):]
                # MobileNetV3's body is its ``features`` Sequential: numbered children
                body["features." + key if key[0].isdigit() else key] = value
            elif key.startswith("classifier."):
                rest["head." + key[len("classifier."):]] = value
            elif key.startswith("aux_classifier."):
                rest["aux_heads.0." + key[len("aux_classifier."):]] = value
            else:
                raise KeyError(f"no conversion rule for key {key!r} (model {model_name})")
        out = {f"backbone.model.{k}": v for k, v in convert_weights(backbone, body, "torchvision", check=False).items()}
        out.update(heads(rest, model_name))
        return out

    return convert


_AUX = _fcn_head("aux_heads.0")
register_converter("fcn_resnet", "torchvision", _converter(_fcn_head("head") + _AUX))
register_converter("deeplabv3", "torchvision", _converter(_DEEPLAB_HEAD + _AUX))
register_converter("lraspp", "torchvision", _converter(_LRASPP_HEAD))
