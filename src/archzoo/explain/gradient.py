"""Gradient- and perturbation-based class activation maps for any head, through pytorch-grad-cam
(Gildenblat et al., PyPI ``grad-cam``, import name ``pytorch_grad_cam``).

Original CAM needs a "global average pool + linear" head. These methods replace the classifier
weights ``w_ck`` with something computed from the network itself, so they also explain AlexNet
and VGG (fully-connected heads) and SqueezeNet (a convolutional head):

* ``gradcam`` — Selvaraju et al. 2016, arXiv:1610.02391: ``w_ck`` = the spatial mean of
  ``d y_c / d f_k``. For a GAP + linear head that is ``w_ck / (h w)``, so Grad-CAM equals CAM.
* ``gradcam++`` — Chattopadhyay et al. 2017, arXiv:1710.11063: weights from positive
  higher-order gradients, for several instances of a class.
* ``hirescam`` — Draelos & Carin 2020, arXiv:2011.08891: gradient times activation per position.
* ``xgradcam`` — Fu et al. 2020, arXiv:2008.02312: activation-weighted gradient means.
* ``layercam`` — Jiang et al. 2021, "LayerCAM", IEEE TIP 30: positive gradients per position.
* ``eigencam`` — Muhammad & Yeasin 2020, arXiv:2008.00299: the first principal component of the
  activations (class-agnostic, no gradients; oriented as :mod:`.eigen` says).
* ``scorecam`` — Wang et al. 2019, arXiv:1910.01279: each channel, upsampled, masks the input;
  the class score of the masked input is its weight (one forward pass per channel: slow).

The layer explained is the model card's ``cam_layer`` or, by default, the output of
``forward_features`` itself: the model runs as ``forward_head(tap(forward_features(x)))`` with
``tap`` an identity module that the library hooks, so no user has to find a layer name and
nothing is hooked inside the model.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn as nn

from .state import as_batch, check_classifier, inspection_mode, model_device, resolve_targets

# method -> class name in pytorch_grad_cam
GRADIENT_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}


class _Tapped(nn.Module):
    """``model`` as ``forward_head(tap(forward_features(x)))``; ``tap`` is where the library hooks.

    pytorch-grad-cam calls ``eval()`` and ``zero_grad()`` on the module it is given; here both
    are no-ops, so the caller's :func:`~archzoo.explain.state.inspection_mode` alone decides the
    mode and no parameter's ``.grad`` is cleared.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.tap(self.model.forward_features(x)))

    def train(self, mode: bool = True) -> "_Tapped":
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        return None


def cam_layer(model: nn.Module, layer: str | None = None) -> str | None:
    """The module explained: ``layer`` if given, else the card's ``cam_layer``; ``None`` means
    the output of ``forward_features``."""
    if layer is None:
        layer = getattr(getattr(model, "card", None), "cam_layer", None)
    if layer is not None:
        try:
            model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"{type(model).__name__} has no module {layer!r} to explain") from None
    return layer


def _library():
    try:
        return importlib.import_module("pytorch_grad_cam")
    except ImportError as e:  # pragma: no cover - a runtime dependency
        raise ImportError("gradient-based explanations need pytorch-grad-cam: pip install grad-cam") from e


def explainer_class(lib, method: str):
    """pytorch-grad-cam's class for ``method``; Eigen-CAM's projection oriented by
    :func:`~archzoo.explain.eigen.first_component` (the library's plain projection has an
    arbitrary sign, so its rectified map can show the background instead of the object)."""
    cls = getattr(lib, GRADIENT_METHODS[method])
    if method != "eigencam":
        return cls
    from .eigen import first_component

    class SignedEigenCAM(cls):
        def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen_smooth):
            return first_component(torch.as_tensor(activations)).numpy()

    return SignedEigenCAM


def gradient_cam(model: nn.Module, images: torch.Tensor, method: str = "gradcam", target=None,
                 layer: str | None = None, batch_size: int = 64) -> torch.Tensor:
    """``[B, H, W]`` maps in [0, 1] at input size by ``method`` (see :data:`GRADIENT_METHODS`).

    ``target``: ``None`` (each image's prediction), an int, or one class per image. ``layer``:
    a module name overriding the card's ``cam_layer``. ``batch_size``: masked inputs per forward
    pass of Score-CAM. The model runs in eval mode with frozen parameters and is left as it was;
    the library's hooks are removed also when the computation fails.
    """
    if method not in GRADIENT_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from cam, {', '.join(GRADIENT_METHODS)}")
    check_classifier(model)
    x = as_batch(images)
    device = images.device
    layer = cam_layer(model, layer)
    lib = _library()
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = resolve_targets(target, len(x), model.num_classes)
    wrapped = _Tapped(model)
    module = wrapped.tap if layer is None else model.get_submodule(layer)
    x = x.to(model_device(model)).detach().requires_grad_(True)  # gradients reach the layer through the input
    with inspection_mode(model), torch.enable_grad():
        explainer = explainer_class(lib, method)(model=wrapped, target_layers=[module])
        explainer.batch_size = batch_size
        try:
            heat = explainer(input_tensor=x, targets=None if targets is None else [ClassifierOutputTarget(t) for t in targets])
        finally:
            # not ``with explainer``: its __exit__ swallows IndexError; release the hooks ourselves
            explainer.activations_and_grads.release()
            explainer.outputs = None
    heat = torch.from_numpy(heat).float().nan_to_num_(0.0).clamp_(0.0, 1.0)
    return heat.to(device)
