"""Where do dense predictors look? Maps for segmenters and detectors.

* A **segmenter** has no single class score, so a gradient method explains a region: the score
  is the sum of class ``k``'s logit over the pixels predicted as ``k`` (pytorch-grad-cam's
  ``SemanticSegmentationTarget``; Vinogradova et al. 2020, "Towards Interpretable Semantic
  Segmentation via Gradient-weighted Class Activation Mapping", arXiv:2002.11434). By default
  ``k`` is the class covering most of the image that is not the background.
* A **detector** outputs boxes, not one differentiable score per class, so it is explained by
  Eigen-CAM (:mod:`.eigen`), which needs neither: the first principal component of a layer's
  activations, by default the backbone's deepest map.

The layer explained is ``layer`` if given, else the card's ``cam_layer``, else the model's
``backbone`` (its deepest map; U-Net: the last ``encoder`` stage). Models run in eval mode and
are left as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .eigen import captured, eigen_maps, tapped
from .gradient import GRADIENT_METHODS, _library, explainer_class
from .state import as_batch, inspection_mode, model_device, resolve_targets

BACKGROUND_NAMES = ("background", "_background_", "__background__", "bg")


def dense_layer(model: nn.Module, layer: str | None = None) -> tuple[nn.Module, str]:
    """``(module, name)`` explained: ``layer``, else the card's ``cam_layer``, else ``backbone``
    (its deepest map), else the last stage of an ``encoder`` list (U-Net's)."""
    name = layer or getattr(getattr(model, "card", None), "cam_layer", None)
    encoder = getattr(model, "encoder", None)
    if name is None and isinstance(getattr(model, "backbone", None), nn.Module):
        name = "backbone"
    elif name is None and isinstance(encoder, (nn.ModuleList, nn.Sequential)) and len(encoder):
        name = f"encoder.{len(encoder) - 1}"
    elif name is None:
        raise ValueError(f"{type(model).__name__} has no backbone and its card names no cam_layer: "
                         "name the module to explain (layer=, --layer)")
    try:
        return model.get_submodule(name), name
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no module {name!r} to explain") from None


class _Run(nn.Module):
    """``model(x)``, with ``train()`` and ``zero_grad()`` no-ops: pytorch-grad-cam calls both on
    the module it is given, and :func:`~archzoo.explain.state.inspection_mode` alone decides."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model(x)

    def train(self, mode: bool = True) -> _Run:
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        return None


def background_classes(class_names) -> set[int]:
    """Indices of the classes named as background (``background``, ``bg`` ...)."""
    return {i for i, n in enumerate(class_names) if str(n).lower() in BACKGROUND_NAMES}


def largest_classes(pred: torch.Tensor, num_classes: int, class_names=None) -> list[int]:
    """Per predicted mask (``[B, H, W]``) the class covering the most pixels that is not a
    background class (:func:`background_classes`); a mask of background alone gives the background."""
    skip = background_classes(class_names or [])
    out = []
    for p in pred:
        counts = torch.bincount(p.flatten().cpu(), minlength=num_classes)
        fg = counts.clone()
        fg[list(skip)] = 0
        out.append(int(fg.argmax()) if fg.any() else int(counts.argmax()))
    return out


@dataclass
class SegmentationMaps:
    """What :func:`segmentation_cam` found: ``maps`` ``[B, H, W]`` in [0, 1] at input size;
    per image the class explained, the share of pixels predicted as it, whether the region was
    empty (then the whole image is the region); ``logits`` ``[B, K, H, W]``; ``layer``."""

    maps: torch.Tensor
    classes: list[int]
    shares: list[float]
    whole_image: list[bool]
    logits: torch.Tensor
    layer: str


def segmentation_cam(model: nn.Module, images: torch.Tensor, method: str = "gradcam", target=None,
                     layer: str | None = None, class_names=None) -> SegmentationMaps:
    """Maps of a segmenter for one class's region per image (see the module doc).

    ``method``: a gradient method (``gradcam``, ``gradcam++``, ``hirescam``, ``xgradcam``,
    ``layercam``, ``scorecam``) or ``eigencam`` (class-agnostic). ``target``: the class
    (``None``: the largest non-background class predicted in each image; an int; one per image).
    """
    if method not in GRADIENT_METHODS:
        raise ValueError(f"a segmenter is explained by one of {', '.join(GRADIENT_METHODS)}, not {method!r}")
    x = as_batch(images)
    device = images.device
    module, name = dense_layer(model, layer)
    x = x.to(model_device(model))
    with inspection_mode(model), torch.no_grad():
        logits = model(x).float()
    if logits.ndim != 4:
        raise ValueError(f"a segmenter gives logits [B, K, H, W]; {type(model).__name__} gave {tuple(logits.shape)}")
    k = logits.shape[1]
    pred = logits.argmax(1)
    classes = resolve_targets(target, len(x), k) or largest_classes(pred, k, class_names)
    regions = [pred[i] == c for i, c in enumerate(classes)]
    shares = [float(r.float().mean()) for r in regions]
    whole = [not bool(r.any()) for r in regions]
    regions = [torch.ones_like(r) if w else r for r, w in zip(regions, whole)]
    if method == "eigencam":
        with inspection_mode(model), torch.no_grad(), captured(module) as seen:
            model(x)
        maps = eigen_maps(seen[-1], x.shape[-2:])
    else:
        from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

        lib = _library()
        targets = [SemanticSegmentationTarget(c, r.float().cpu().numpy()) for c, r in zip(classes, regions)]
        inp = x.detach().requires_grad_(True)  # gradients reach the layer through the input (parameters stay frozen)
        with inspection_mode(model), torch.enable_grad(), tapped(module) as tap:
            explainer = explainer_class(lib, method)(model=_Run(model), target_layers=[tap])
            try:
                heat = explainer(input_tensor=inp, targets=targets)
            finally:
                explainer.activations_and_grads.release()
                explainer.outputs = None
        maps = torch.from_numpy(heat).float().nan_to_num_(0.0).clamp_(0.0, 1.0)
    return SegmentationMaps(maps.to(device), classes, shares, whole, logits.to(device), name)


@dataclass
class DetectionMaps:
    """What :func:`detection_cam` found: ``maps`` ``[B, H, W]`` in [0, 1] at input size, the
    detector's ``detections`` (one dict per image, boxes in input pixels), the ``layer``."""

    maps: torch.Tensor
    detections: list[dict]
    layer: str


def detection_cam(model: nn.Module, images: torch.Tensor, layer: str | None = None) -> DetectionMaps:
    """Eigen-CAM of a detector on ``images`` (``[B, C, H, W]`` as the detector takes them) and
    its detections from the same forward pass. The map covers what the layer sees: a detector
    that resizes and pads its batch (:class:`~archzoo.detection.transform.DetectionTransform`)
    has its padding cut off, so the map lines up with the image."""
    from ..detection.transform import DetectionTransform

    x = as_batch(images)
    device = images.device
    module, name = dense_layer(model, layer)
    x = x.to(model_device(model))
    with inspection_mode(model), torch.no_grad():
        with captured(module) as seen:
            detections = model(x)
        crop = None
        transform = getattr(model, "transform", None)
        if isinstance(transform, DetectionTransform):
            batch, _ = transform(list(x))
            crop = (*batch.tensors.shape[-2:], *batch.image_sizes[0])
    if not seen:
        raise ValueError(f"{type(model).__name__}: the module {name!r} did not run")
    maps = eigen_maps(seen[-1], x.shape[-2:], crop)
    detections = [{k: v.detach().to(device) for k, v in d.items()} for d in detections]
    return DetectionMaps(maps.to(device), detections, name)
