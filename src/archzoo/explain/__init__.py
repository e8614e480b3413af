"""Where does a classifier look? Class activation maps for every model in the zoo.

    from archzoo.explain import cam, explain, embed
    heat = cam(model, images)                         # original CAM: [B, H, W] in [0, 1] at input size
    heat = explain(model, images, method="gradcam")   # gradcam, gradcam++, hirescam, xgradcam, layercam, eigencam, scorecam
    heat = explain(model, images, method="auto")      # CAM where the head allows it, else Grad-CAM
    emb = embed(model, images)                        # the pooled features the classifier reads

Original CAM (Zhou et al. 2016, arXiv:1512.04150, :mod:`.cam`) needs only the shared classifier
API and works for every model whose head is global average pooling + linear; the
gradient-based family (:mod:`.gradient`, through pytorch-grad-cam) works for every head and
explains the card's ``cam_layer`` (default: the output of ``forward_features``). Segmenters and
detectors are explained too (:mod:`.dense`: a class's region by a gradient method, Eigen-CAM of
a detector's backbone); :func:`explain` picks by the card's task. All of them run
the model in eval mode, on a batch, and leave it exactly as it was: training flags,
``requires_grad`` flags, parameters and gradients unchanged, no hooks left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from .cam import NotLinearHeadError, cam, supports_cam
from .dense import DetectionMaps, SegmentationMaps, detection_cam, segmentation_cam
from .eigen import first_component
from .gradient import GRADIENT_METHODS, cam_layer, gradient_cam
from .state import as_batch, check_classifier, inspection_mode, model_device

METHODS = ("auto", "cam", *GRADIENT_METHODS)

__all__ = ["METHODS", "DetectionMaps", "NotLinearHeadError", "SegmentationMaps", "cam", "cam_grid", "cam_layer",
           "detection_cam", "embed", "explain", "explain_method", "first_component", "method_for", "segmentation_cam",
           "supports_cam"]


def method_for(task: str, method: str) -> str:
    """The method ``method`` (``auto`` resolved) for a model of ``task``, or a ValueError: a
    segmenter takes the gradient methods and Eigen-CAM (auto: Grad-CAM), a detector Eigen-CAM only."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if task == "detection":
        if method not in ("auto", "eigencam"):
            raise ValueError(f"method {method!r} needs one class score per image; a detector outputs boxes, so it is "
                             "explained by eigencam (gradient-free), which auto chooses")
        return "eigencam"
    if task == "segmentation":
        if method == "cam":
            raise ValueError("original CAM explains a classifier's pooled head; a segmenter is explained by a gradient "
                             "method over a class's region (gradcam, which auto chooses, ...) or eigencam")
        return "gradcam" if method == "auto" else method
    return method


def explain_method(model: nn.Module, images: torch.Tensor, method: str = "gradcam", target=None,
                   layer: str | None = None) -> tuple[torch.Tensor, str]:
    """:func:`explain`, also returning the method used (what ``"auto"`` chose)."""
    task = getattr(getattr(model, "card", None), "task", "classification")
    if task != "classification":  # dense predictors: their own explainers (.dense)
        chosen = method_for(task, method)
        if task == "detection":
            if target is not None:
                raise ValueError("a detector's Eigen-CAM is class-agnostic: it takes no target class")
            return detection_cam(model, images, layer).maps, chosen
        return segmentation_cam(model, images, chosen, target, layer).maps, chosen
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    # "auto" keeps to CAM only where the card does not point explanations elsewhere
    card_layer = getattr(getattr(model, "card", None), "cam_layer", None)
    if (method == "cam" or (method == "auto" and card_layer is None)) and layer is None:
        try:
            return cam(model, images, target), "cam"
        except NotLinearHeadError:
            if method == "cam":
                raise
    elif method == "cam":
        raise ValueError("original CAM explains the output of forward_features only; drop layer= or use "
                         "method='gradcam'")
    chosen = "gradcam" if method == "auto" else method
    return gradient_cam(model, images, chosen, target, layer), chosen


def explain(model: nn.Module, images: torch.Tensor, method: str = "gradcam", target=None,
            layer: str | None = None) -> torch.Tensor:
    """Class activation maps of ``model`` on ``images`` by ``method``: ``[B, H, W]`` in [0, 1] at input size.

    Args:
        model: a classifier made by :func:`archzoo.create_model` (or :func:`archzoo.load_model`).
        images: normalised model input ``[B, C, H, W]`` (or one ``[C, H, W]``).
        method: ``"cam"`` (original CAM), one of ``gradcam``, ``gradcam++``, ``hirescam``,
            ``xgradcam``, ``layercam``, ``eigencam``, ``scorecam``, or ``"auto"`` (CAM where the
            head is global average pooling + linear and the card names no other ``cam_layer``,
            else Grad-CAM).
        target: the class to explain: ``None`` (each image's prediction), an int, or one per image.
        layer: a module name to explain instead of the card's ``cam_layer`` (gradient methods).
    """
    return explain_method(model, images, method, target, layer)[0]


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``forward_head(forward_features(x), pre_logits=True)``: the features the final layer reads,
    ``[B, num_features]`` for a global-average-pool head (``[B, hidden]`` for AlexNet/VGG's
    fully-connected head). Runs in eval mode and leaves the model as it was."""
    check_classifier(model)
    x = as_batch(images)
    with inspection_mode(model):
        out = model.forward_head(model.forward_features(x.to(model_device(model))), pre_logits=True)
    return out.to(images.device)


def cam_grid(model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None, transform,
             class_names: Sequence[str], path: str | Path, method: str = "auto", max_images: int = 16,
             cols: int = 8) -> Path:
    """A PNG grid of class activation maps for uint8 ``images`` ``[N, C, H, W]`` (the first ``max_images``).

    ``transform`` maps a uint8 batch to model input (e.g. an eval-mode ``BatchAugment``); each
    cell shows the image with the map of the predicted class blended over it, titled with that
    class and its probability, red where it differs from ``labels``. Used by the ``archzoo demo`` report.
    """
    import torch.nn.functional as F

    from .render import save_grid

    images = images[:max_images]
    x = transform(images.to(model_device(model))).float()
    heat, _ = explain_method(model, x, method)
    with inspection_mode(model), torch.no_grad():
        probs = model(x).float().softmax(-1).cpu()
    conf, pred = probs.max(-1)
    shown = images.float().cpu() / 255
    if shown.shape[-2:] != x.shape[-2:]:
        shown = F.interpolate(shown, size=x.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    shown = shown.expand(-1, 3, -1, -1) if shown.shape[1] == 1 else shown
    pictures = [p.clamp(0, 1).permute(1, 2, 0).numpy() for p in shown]
    titles = [f"{class_names[int(k)]} ({c:.0%})" for k, c in zip(pred, conf)]
    colors = ["black" if labels is None or int(k) == int(t) else "red" for k, t in
              zip(pred, labels if labels is not None else pred)]
    return save_grid(path, pictures, heat.cpu(), titles, cols=cols, colors=colors)
