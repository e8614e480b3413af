"""Class activation mapping — Zhou et al. 2016, "Learning Deep Features for Discriminative
Localization", arXiv:1512.04150.

A network whose head is global average pooling followed by one linear layer scores class ``c``
as ``y_c = sum_k w_ck * mean_xy f_k(x, y) + b_c``. Moving the sum inside the mean gives the
class activation map ``M_c(x, y) = sum_k w_ck f_k(x, y)``: how much each position of the last
feature map contributes to ``y_c``. It needs nothing but the shared classifier API —
``forward_features``, ``forward_head`` and ``get_classifier`` — so it works for every model in
the zoo whose head has that shape, and :func:`linear_head` checks that it does by what the head
computes, not by the model's name.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .state import as_batch, check_classifier, inspection_mode, model_device, normalise, resolve_targets

ALTERNATIVE = "explain(model, images, method='gradcam') (or gradcam++, layercam, scorecam, eigencam), which works with any head"


class NotLinearHeadError(ValueError):
    """The model's head is not global average pooling + linear, so the original CAM is undefined."""


def _final_layer_weights(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(W [classes, in], b [classes])`` of a linear layer or a 1x1 convolution; ``None`` for anything else."""
    if isinstance(layer, nn.Linear):
        w = layer.weight
    elif isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1 and layer.stride == (1, 1):
        w = layer.weight.flatten(1)
    else:
        return None
    b = layer.bias if layer.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    return w.detach(), b.detach()


def linear_head(model: nn.Module, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` such that ``forward_head(f) == W @ mean_xy(f) + b`` for feature maps ``f`` shaped
    like ``feats``; raises :class:`NotLinearHeadError` (saying why, and what to use instead) when
    the head is not global average pooling + one linear layer.

    The check is structural by behaviour: the final layer (``get_classifier()``) must be linear
    (or a 1x1 convolution) on ``num_features`` inputs, and the whole head, applied to a random
    feature map, must equal that layer applied to the map's spatial mean. A fully-connected
    head with hidden layers (AlexNet, VGG), a convolutional head with an activation before the
    pooling (SqueezeNet) or max pooling all fail it. Call in eval mode.
    """
    name = getattr(getattr(model, "card", None), "name", type(model).__name__)
    wb = _final_layer_weights(model.get_classifier())
    if wb is None:
        raise NotLinearHeadError(f"original CAM needs a head that is global average pooling + one linear layer; {name}'s "
                                 f"final layer ({type(model.get_classifier()).__name__}) is not linear. Use {ALTERNATIVE}.")
    w, b = wb
    c = feats.shape[1]
    if w.shape[1] != c:
        raise NotLinearHeadError(f"original CAM needs a head that is global average pooling + one linear layer; {name}'s "
                                 f"final layer takes {w.shape[1]} inputs, not the {c} channels of the feature map "
                                 f"(hidden layers lie between). Use {ALTERNATIVE}.")
    g = torch.Generator().manual_seed(0)
    probe = torch.randn((2, c, *feats.shape[2:]), generator=g).to(feats)
    with torch.no_grad():
        got = model.forward_head(probe)
        want = probe.mean((2, 3)) @ w.t() + b
    if got.shape != want.shape or (got - want).abs().max() > 1e-4 * want.abs().max().clamp_min(1e-6):
        raise NotLinearHeadError(f"original CAM needs a head that is global average pooling + one linear layer; {name}'s "
                                 "head is not linear in the spatial mean of the feature map (an activation or another "
                                 f"pooling lies between). Use {ALTERNATIVE}.")
    return w, b


def supports_cam(model: nn.Module, images: torch.Tensor | None = None) -> bool:
    """Whether :func:`cam` applies to ``model`` (probed at ``images``' size, default the card's smallest input)."""
    check_classifier(model)
    if images is None:
        card = getattr(model, "card", None)
        shape = card.min_input_size if card is not None else (3, 32, 32)
        c = getattr(model, "build_args", {}).get("in_chans", shape[0])
        images = torch.zeros(1, c, *shape[1:])
    x = as_batch(images)[:1].to(model_device(model))
    with inspection_mode(model), torch.no_grad():
        feats = model.forward_features(x)
        try:
            linear_head(model, feats)
        except NotLinearHeadError:
            return False
    return True


def class_activation_maps(model: nn.Module, images: torch.Tensor, target=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(maps [B, H, W] in [0, 1] at input size, logits [B, classes])``; see :func:`cam`."""
    check_classifier(model)
    x = as_batch(images)
    device = images.device
    x = x.to(model_device(model))
    with inspection_mode(model), torch.no_grad():
        feats = model.forward_features(x)
        w, _ = linear_head(model, feats)
        logits = model.forward_head(feats)
        targets = resolve_targets(target, len(x), logits.shape[-1])
        idx = logits.argmax(-1) if targets is None else torch.tensor(targets, device=logits.device)
        # M_c(x, y) = sum_k w_ck f_k(x, y), then ReLU (only evidence for the class), upsampled bilinearly
        maps = torch.einsum("bk,bkhw->bhw", w[idx].to(feats.dtype), feats).relu()
        maps = F.interpolate(maps[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return normalise(maps).to(device), logits.float().to(device)


def cam(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """Original class activation maps (Zhou et al. 2016, arXiv:1512.04150) of ``model`` on ``images``.

    Args:
        model: a classifier whose head is global average pooling + linear (ResNet, DenseNet,
            EfficientNet, Inception ...); others raise :class:`NotLinearHeadError` naming the
            gradient-based alternative.
        images: normalised model input ``[B, C, H, W]`` (or one ``[C, H, W]``).
        target: the class to explain: ``None`` (each image's prediction), an int, or one per image.

    Returns:
        ``[B, H, W]`` maps in [0, 1] at the input size: ``ReLU(sum_k w_ck f_k)`` upsampled
        bilinearly, then scaled per image so its minimum is 0 and maximum 1. The model is run in
        eval mode and left exactly as it was.
    """
    return class_activation_maps(model, images, target)[0]
