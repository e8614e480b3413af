"""torchvision's FCOS: body and FPN as RetinaNet's (:mod:`archzoo.weights.retinanet`); each tower
is a flat ``conv.{3i}`` (conv) / ``conv.{3i+1}`` (group norm) sequence there, ``ConvNormAct``
blocks (``conv``/``bn``) here."""

from __future__ import annotations

from . import register_converter
from .retinanet import fpn_detector_converter

_TOWERS = tuple(
    rule
    for tv, ours in (("classification_head", "cls_tower"), ("regression_head", "box_tower"))
    for i in range(4)
    for rule in ((rf"head\.{tv}\.conv\.{3 * i}\.(weight|bias)", rf"head.{ours}.{i}.conv.\1"),
                 (rf"head\.{tv}\.conv\.{3 * i + 1}\.(weight|bias)", rf"head.{ours}.{i}.bn.\1"))
)
_HEAD = _TOWERS + (
    (r"head\.classification_head\.cls_logits\.(weight|bias)", r"head.cls_logits.\1"),
    (r"head\.regression_head\.bbox_reg\.(weight|bias)", r"head.box_reg.\1"),
    (r"head\.regression_head\.bbox_ctrness\.(weight|bias)", r"head.centerness.\1"),
)

register_converter("fcos", "torchvision", fpn_detector_converter(_HEAD))
