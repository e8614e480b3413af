"""Key maps for EfficientDet from the ``effdet`` package (``tf_efficientdet_d0`` ... ``d7``).

The backbone is timm's EfficientNet under ``backbone.``: its keys go through the EfficientNet
family's own timm converter (with the backbone classifier's name, which fixes the block layout)
and land under our backbone's ``backbone.model.``. effdet's BiFPN numbers its fusion nodes
``fpn.cell.<layer>.fnode.<node>`` and keys each node's resampling by the *input id*
(``combine.resample.<id>``); ours are ``neck.layers.<layer>.nodes.<node>.inputs.<k>``, the k-th
input of the node, so the id is looked up in the node graph. effdet's head batch norms are
repeat-first (``bn_rep.<repeat>.<level>.bn``), ours level-first (``norms.<level>.<repeat>``).
"""

from __future__ import annotations

import re

from . import BN, KeyMap, StateDict, register_converter
from .mobilenet_v2 import timm_converter

_NECK_AND_HEADS = KeyMap((
    (r"fpn\.resample\.(\d+)\.conv\.conv\.(weight|bias)", r"neck.extra.\1.proj.conv.\2"),
    (rf"fpn\.resample\.(\d+)\.conv\.bn\.{BN}", r"neck.extra.\1.proj.bn.\2"),
    (r"fpn\.cell\.(\d+)\.fnode\.(\d+)\.combine\.resample\.(\d+)\.conv\.conv\.(weight|bias)", r"neck.layers.\1.nodes.\2.inputs.\3.proj.conv.\4"),
    (rf"fpn\.cell\.(\d+)\.fnode\.(\d+)\.combine\.resample\.(\d+)\.conv\.bn\.{BN}", r"neck.layers.\1.nodes.\2.inputs.\3.proj.bn.\4"),
    (r"fpn\.cell\.(\d+)\.fnode\.(\d+)\.combine\.edge_weights", r"neck.layers.\1.nodes.\2.weights"),
    (r"fpn\.cell\.(\d+)\.fnode\.(\d+)\.after_combine\.conv\.conv_dw\.weight", r"neck.layers.\1.nodes.\2.conv.depthwise.weight"),
    (r"fpn\.cell\.(\d+)\.fnode\.(\d+)\.after_combine\.conv\.conv_pw\.(weight|bias)", r"neck.layers.\1.nodes.\2.conv.pointwise.\3"),
    (rf"fpn\.cell\.(\d+)\.fnode\.(\d+)\.after_combine\.conv\.bn\.{BN}", r"neck.layers.\1.nodes.\2.conv.bn.\3"),
    (r"(class_net|box_net)\.conv_rep\.(\d+)\.conv_dw\.weight", r"\1.convs.\2.depthwise.weight"),
    (r"(class_net|box_net)\.conv_rep\.(\d+)\.conv_pw\.(weight|bias)", r"\1.convs.\2.pointwise.\3"),
    (rf"(class_net|box_net)\.bn_rep\.(\d+)\.(\d+)\.bn\.{BN}", r"\1.norms.\3.\2.\4"),
    (r"(class_net|box_net)\.predict\.conv_dw\.weight", r"\1.predict.depthwise.weight"),
    (r"(class_net|box_net)\.predict\.conv_pw\.(weight|bias)", r"\1.predict.pointwise.\2"),
))

_RESAMPLE = re.compile(r"(fpn\.cell\.\d+\.fnode\.(\d+)\.combine\.resample\.)(\d+)(\..*)")
_EXTRA = re.compile(r"fpn\.resample\.(\d+)(\..*)")


def _effdet(state_dict: StateDict, name: str) -> StateDict:
    from ..detection.necks.bifpn import bifpn_nodes
    from ..registry import model_card

    card = model_card(name)
    backbone = card.kwargs.get("backbone", "efficientnet_b0")
    if not any(k.startswith("fpn.cell.") for k in state_dict):
        raise KeyError("not an effdet EfficientDet state dict (no fpn.cell.* keys)")
    graph = bifpn_nodes(5)
    backbone_levels = (3, 4, 5)  # P3-P5 from the backbone, P6 and P7 made by resampling
    inner = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    out = {f"backbone.model.{k}": v for k, v in timm_converter(inner, backbone).items()}
    rest = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            continue
        m = _RESAMPLE.fullmatch(key)
        if m:  # input id -> position among the node's inputs
            key = f"{m[1]}{graph[int(m[2])][1].index(int(m[3]))}{m[4]}"
        m = _EXTRA.fullmatch(key)
        if m:  # effdet keys the extra levels by level index (3 = P6), ours count them from 0
            key = f"fpn.resample.{int(m[1]) - len(backbone_levels)}{m[2]}"
        rest[key] = value
    out.update(_NECK_AND_HEADS(rest, name))
    return out


register_converter("efficientdet", "effdet", _effdet)
