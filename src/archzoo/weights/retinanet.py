"""torchvision's RetinaNet (and, through :func:`fpn_detector_converter`, FCOS): the ResNet body
through the ResNet key map, the FPN and the head through the renames below.

torchvision: ``backbone.body.*`` (a ResNet without its classifier), ``backbone.fpn.inner_blocks.i.0``
(lateral 1x1), ``layer_blocks.i.0`` (3x3 output), ``extra_blocks.p6/p7``; ours: ``backbone.model.*``,
``neck.lateral.i``, ``neck.output.i``, ``neck.extra.0/1``.
"""

from __future__ import annotations

from . import KeyMap, StateDict, convert_weights, register_converter

_FPN = (
    (r"backbone\.fpn\.inner_blocks\.(\d)\.0\.(weight|bias)", r"neck.lateral.\1.\2"),
    (r"backbone\.fpn\.layer_blocks\.(\d)\.0\.(weight|bias)", r"neck.output.\1.\2"),
    (r"backbone\.fpn\.extra_blocks\.p6\.(weight|bias)", r"neck.extra.0.\1"),
    (r"backbone\.fpn\.extra_blocks\.p7\.(weight|bias)", r"neck.extra.1.\1"),
)

_RETINANET_HEAD = (
    (r"head\.classification_head\.conv\.(\d)\.0\.(weight|bias)", r"head.cls_tower.\1.conv.\2"),
    (r"head\.classification_head\.cls_logits\.(weight|bias)", r"head.cls_logits.\1"),
    (r"head\.regression_head\.conv\.(\d)\.0\.(weight|bias)", r"head.box_tower.\1.conv.\2"),
    (r"head\.regression_head\.bbox_reg\.(weight|bias)", r"head.box_reg.\1"),
)


def fpn_detector_converter(head_rules) -> callable:
    """A converter for torchvision's ``backbone.body`` + ``backbone.fpn`` + ``head`` detectors: the
    body goes through the backbone classifier's own torchvision converter (the card's ``backbone``)."""
    rest = KeyMap(_FPN + tuple(head_rules))

    def convert(state_dict: StateDict, model_name: str) -> StateDict:
        from ..registry import model_card

        backbone = model_card(model_name).kwargs.get("backbone", "resnet50")
        body = {k[len("backbone.body."):]: v for k, v in state_dict.items() if k.startswith("backbone.body.")}
        others = {k: v for k, v in state_dict.items() if not k.startswith("backbone.body.")}
        out = {f"backbone.model.{k}": v for k, v in convert_weights(backbone, body, "torchvision", check=False).items()}
        out.update(rest(others, model_name))
        return out

    return convert


register_converter("retinanet", "torchvision", fpn_detector_converter(_RETINANET_HEAD))
