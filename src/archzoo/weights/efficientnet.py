"""Key maps for EfficientNet B0-B7 (see :mod:`archzoo.weights.mobilenet_v2` for the tagging scheme).

torchvision nests blocks per stage (``features.<stage + 1>.<block>``) and numbers the parts of an
MBConv ``block.0`` ... : expand, depthwise, SE, project — without the expand conv when the block
does not expand (our ``ds`` block). timm's layout is the one MobileNetV2 uses.
"""

from __future__ import annotations

from . import KeyMap, StateDict, register_converter
from .mobilenet_v2 import block_layout, conv_bn, part, tag_blocks, timm_converter

_TV = KeyMap((
    *conv_bn("features.0.0", "features.0.1", "stem"),
    *part("ds", "block.0.0", "block.0.1", "depthwise"),
    (r"(stages\.\d+\.\d+)\.ds\.block\.1\.(fc1|fc2)\.(weight|bias)", r"\1.se.\2.\3"),
    *part("ds", "block.2.0", "block.2.1", "project"),
    *part("ir", "block.0.0", "block.0.1", "expand"),
    *part("ir", "block.1.0", "block.1.1", "depthwise"),
    (r"(stages\.\d+\.\d+)\.ir\.block\.2\.(fc1|fc2)\.(weight|bias)", r"\1.se.\2.\3"),
    *part("ir", "block.3.0", "block.3.1", "project"),
    *conv_bn("features.last.0", "features.last.1", "conv_head"),
    (r"classifier\.1\.(weight|bias)", r"head.fc.\1"),
))


def _torchvision(state_dict: StateDict, name: str) -> StateDict:
    return _TV(tag_blocks(state_dict, name, "features", nested=True, first=1), name)


def _torchvision_nodes(name: str) -> list[str]:
    """torchvision's ``features.<stage + 1>`` for each feature stage."""
    return [f"features.{i + 1}" for i in block_layout(name)[1]]


register_converter("efficientnet", "torchvision", _torchvision, feature_nodes=_torchvision_nodes)
register_converter("efficientnet", "timm", timm_converter)
