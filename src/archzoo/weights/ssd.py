"""torchvision's SSD300-VGG16 and SSDLite320-MobileNetV3: the backbone's keys go back to the
classifier's own torchvision layout and through that family's converter; the rest is renamed here.

SSD300 (torchvision): ``backbone.features.i`` (VGG-16 up to conv4_3), ``backbone.extra.0`` (pool4,
conv5_1 .. conv5_3 as VGG's ``features.24 ..``, then ``.7``: pool5, fc6, fc7), ``backbone.extra.1-4``
(conv8 .. conv11), ``backbone.scale_weight``; ours: ``backbone.model.stages.*`` (the zoo's VGG),
``neck.fc.1/2`` (fc6, fc7), ``neck.extra.0-3``, ``neck.l2norm.weight``.

SSDLite (torchvision): ``backbone.features.0`` (the MobileNet up to and with the C4 block's
expansion ``block.0``), ``backbone.features.1`` (the rest of that block, ``.0``, then the later
layers), ``backbone.extra.i.{0,1,2}`` (Conv2dNormActivation: ``.0`` conv, ``.1`` norm); ours: the
classifier's names under ``backbone.``, ``neck.extra.i.{0,1,2}.{conv,bn}``.

Heads: ``head.{classification,regression}_head.module_list.i`` -> ``head.{classification,regression}.i``
(SSDLite's ``.0.0/.0.1`` depthwise conv/norm -> ``.0.conv/.0.bn``).
"""

from __future__ import annotations

import re

from . import BN, KeyMap, StateDict, convert_weights, register_converter


def _backbone_name(model_name: str) -> str:
    from ..registry import model_card

    return model_card(model_name).kwargs["backbone"]


def _split(state_dict: StateDict, prefix: str) -> tuple[StateDict, StateDict]:
    inside = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return inside, {k: v for k, v in state_dict.items() if not k.startswith(prefix)}


_SSD300 = KeyMap((
    (r"backbone\.scale_weight", r"neck.l2norm.weight"),
    (r"backbone\.extra\.0\.7\.1\.(weight|bias)", r"neck.fc.1.conv.\1"),
    (r"backbone\.extra\.0\.7\.3\.(weight|bias)", r"neck.fc.2.conv.\1"),
    (r"backbone\.extra\.([1-4])\.0\.(weight|bias)", r"neck.extra.\1.0.conv.\2"),
    (r"backbone\.extra\.([1-4])\.2\.(weight|bias)", r"neck.extra.\1.1.conv.\2"),
    (r"head\.(classification|regression)_head\.module_list\.(\d)\.(weight|bias)", r"head.\1.\2.\3"),
), shift=(("neck.extra", -1),))


def _ssd300(state_dict: StateDict, name: str) -> StateDict:
    vgg, rest = _split(state_dict, "backbone.features.")
    vgg = {f"features.{k}": v for k, v in vgg.items()}
    pool4 = max(int(k.split(".")[1]) for k in vgg) + 2  # after conv4_3 and its ReLU
    for k in [k for k in rest if re.fullmatch(r"backbone\.extra\.0\.[1-6]\.(weight|bias)", k)]:
        i, leaf = k.split(".")[3:]
        vgg[f"features.{pool4 + int(i)}.{leaf}"] = rest.pop(k)
    out = {f"backbone.model.{k}": v for k, v in convert_weights(_backbone_name(name), vgg, "torchvision", check=False).items()}
    out.update(_SSD300(rest, name))
    return out


_SSDLITE = KeyMap((
    (r"backbone\.extra\.(\d)\.([012])\.0\.weight", r"neck.extra.\1.\2.conv.weight"),
    (rf"backbone\.extra\.(\d)\.([012])\.1\.{BN}", r"neck.extra.\1.\2.bn.\3"),
    (r"head\.(classification|regression)_head\.module_list\.(\d)\.0\.0\.weight", r"head.\1.\2.0.conv.weight"),
    (rf"head\.(classification|regression)_head\.module_list\.(\d)\.0\.1\.{BN}", r"head.\1.\2.0.bn.\3"),
    (r"head\.(classification|regression)_head\.module_list\.(\d)\.1\.(weight|bias)", r"head.\1.\2.1.\3"),
))


def _ssdlite(state_dict: StateDict, name: str) -> StateDict:
    first, rest = _split(state_dict, "backbone.features.0.")
    second, rest = _split(rest, "backbone.features.1.")
    c4 = max(int(k.split(".")[0]) for k in first)  # the last entry of features.0 is the C4 block's expansion
    mobilenet = {}
    for k, v in first.items():
        i, tail = k.split(".", 1)
        mobilenet[f"features.{i}.{tail}" if int(i) < c4 else f"features.{c4}.block.0.{tail}"] = v
    for k, v in second.items():
        i, tail = k.split(".", 1)
        if int(i) == 0:  # the rest of the C4 block (a slice of it: block.1 onwards keep their numbers)
            mobilenet[f"features.{c4}.block.{tail}"] = v
        else:
            mobilenet[f"features.{c4 + int(i)}.{tail}"] = v
    out = {f"backbone.{k}": v for k, v in convert_weights(_backbone_name(name), mobilenet, "torchvision", check=False).items()}
    out.update(_SSDLITE(rest, name))
    return out


register_converter("ssd", "torchvision", _ssd300)
register_converter("ssdlite", "torchvision", _ssdlite)
