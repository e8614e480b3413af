"""torchvision's Faster R-CNN and Mask R-CNN: the backbone through its classifier's key map, the FPN
through RetinaNet's (:mod:`archzoo.weights.retinanet`), the RPN and RoI heads renamed here.

torchvision: ``backbone.body.*`` (a ResNet without classifier; a MobileNet's ``features.<n>``
numbered ``<n>``), ``backbone.fpn.*`` (no tensors for the max-pool level), ``rpn.head.conv.0.0``,
``rpn.head.cls_logits``, ``rpn.head.bbox_pred``, ``roi_heads.box_head.fc6/fc7``,
``roi_heads.box_predictor.cls_score/bbox_pred``, ``roi_heads.mask_head.<i>.0``,
``roi_heads.mask_predictor.conv5_mask/mask_fcn_logits``; ours: ``backbone.model.*``, ``neck.*``,
``proposer.head.conv.0.conv``, ``proposer.head.objectness``, ``proposer.head.box_deltas``, the same
box head and predictor names, ``roi_heads.mask_head.<i>.conv``, ``roi_heads.mask_predictor.upsample/logits``.
"""

from __future__ import annotations

from . import KeyMap, StateDict, convert_weights, register_converter
from .retinanet import _FPN

_HEADS = KeyMap(_FPN + (
    (r"rpn\.head\.conv\.(\d+)\.0\.(weight|bias)", r"proposer.head.conv.\1.conv.\2"),
    (r"rpn\.head\.cls_logits\.(weight|bias)", r"proposer.head.objectness.\1"),
    (r"rpn\.head\.bbox_pred\.(weight|bias)", r"proposer.head.box_deltas.\1"),
    (r"roi_heads\.box_head\.(fc6|fc7)\.(weight|bias)", r"roi_heads.box_head.\1.\2"),
    (r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)", r"roi_heads.box_predictor.\1.\2"),
    (r"roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)", r"roi_heads.mask_head.\1.conv.\2"),
    (r"roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)", r"roi_heads.mask_predictor.upsample.\1"),
    (r"roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)", r"roi_heads.mask_predictor.logits.\1"),
))


def _torchvision(state_dict: StateDict, model_name: str) -> StateDict:
    from ..registry import model_card

    kwargs = model_card(model_name).kwargs
    backbone = kwargs.get("backbone", "resnet50")
    body = {k[len("backbone.body."):]: v for k, v in state_dict.items() if k.startswith("backbone.body.")}
    if kwargs.get("out_strides") == "mobile":  # torchvision's MobileNet body is the classifier's ``features``
        body = {f"features.{k}": v for k, v in body.items()}
    out = {f"backbone.model.{k}": v for k, v in convert_weights(backbone, body, "torchvision", check=False).items()}
    out.update(_HEADS({k: v for k, v in state_dict.items() if not k.startswith("backbone.body.")}, model_name))
    return out


register_converter("faster_rcnn", "torchvision", _torchvision)
register_converter("mask_rcnn", "torchvision", _torchvision)
