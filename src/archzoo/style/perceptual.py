"""The perceptual network: fixed features of any zoo backbone, Gram matrices and the losses.

A backbone is built through the backbone contract, ``create_model(name, features_only=True,
out_indices=...)``, so every classifier of the zoo serves. Layers are named two ways:

* by feature map, the contract's index: ``"0"``, ``"2"`` ... (``feature_info`` lists them; each is
  a stage's output, e.g. VGG's relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 on VGG-16);
* on VGG, as the papers name them, ``relu<stage>_<conv>`` (``relu1_1`` ... ``relu5_4``): the
  backbone's own stage modules are run one convolution at a time to tap inside a stage.

Losses (``content``, ``style``, ``tv``) follow Gatys et al. and Johnson et al.: the content loss
compares feature maps, the style loss their Gram matrices ``G = F F^T / (C H W)`` (which
channels fire together, wherever in the picture: texture without layout), and the total
variation term penalises differences of neighbouring pixels. One departure: each term is a
*relative* squared error (divided by the mean square of its target), so one set of loss weights
works for any backbone and any weights; the papers' absolute errors differ in scale by orders of
magnitude between VGG with ImageNet weights, random weights and a CIFAR ResNet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from ..validate import UserError, shown

VGG_LAYER = re.compile(r"^relu(\d)_(\d)$")
# (content layer, style layers) of each paper, on VGG-19 (Gatys) and VGG-16 (Johnson)
GATYS_LAYERS = ("relu4_2", ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"))
JOHNSON_LAYERS = ("relu2_2", ("relu1_2", "relu2_2", "relu3_3", "relu4_3"))


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, C, C]``: channel correlations summed over positions, / (C H W)."""
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def relative_mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error divided by the mean square of ``target`` (per sample, then averaged)."""
    dims = tuple(range(1, x.ndim))
    return ((x - target).square().mean(dims) / target.square().mean(dims).clamp_min(1e-12)).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of vertically and horizontally neighbouring pixels."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


@dataclass(frozen=True)
class LossWeights:
    content: float = 1.0
    style: float = 10.0
    tv: float = 0.01


def default_layers(backbone: str, method: str) -> tuple[str, tuple[str, ...]]:
    """The paper's layers on VGG; elsewhere every feature map for style and the middle one for content."""
    from ..registry import model_card

    if model_card(backbone).arch == "vgg":
        return GATYS_LAYERS if method == "gatys" else JOHNSON_LAYERS
    n = len(_feature_info(backbone))
    return str(n // 2), tuple(str(i) for i in range(n))


def _feature_info(backbone: str):
    from ..builder import create_model
    from ..registry import get_entry

    try:
        get_entry(backbone)
    except KeyError as e:
        raise UserError(f"--backbone: {e.args[0]}") from None

    with torch.device("meta"):
        try:
            return create_model(backbone, features_only=True).feature_info
        except (TypeError, ValueError, AttributeError) as e:
            raise UserError(f"--backbone: {backbone} has no features_only backbone to take perceptual features "
                            f"from ({e}); use a classifier such as vgg16, vgg19 or resnet20") from None


@dataclass(frozen=True)
class Tap:
    """A layer to read: ``stage`` (its feature map's index) and ``path`` (a module inside the
    stage, or ``None`` for the stage's feature map itself)."""

    name: str
    stage: int
    path: str | None = None


def resolve_tap(backbone: str, spec: str, info, option: str) -> Tap:
    """A layer name (a feature-map index, or ``relu<s>_<c>`` on VGG) -> :class:`Tap`."""
    from ..registry import model_card

    card = model_card(backbone)
    spec = str(spec).strip()
    m = VGG_LAYER.match(spec)
    if m:
        if card.arch != "vgg":
            raise UserError(f"{option}: {spec!r} names a VGG layer, but {backbone} is not a VGG; name its feature maps "
                            f"by index 0..{len(info) - 1} (channels {info.channels()}, strides {info.strides()})")
        stage, conv = int(m.group(1)) - 1, int(m.group(2))
        depths = card.kwargs["depths"]
        if not (0 <= stage < len(depths) and 1 <= conv <= depths[stage]):
            valid = ", ".join(f"relu{s + 1}_{c + 1}" for s, d in enumerate(depths) for c in range(d))
            raise UserError(f"{option}: {backbone} has no layer {spec!r}; its layers: {valid}")
        return Tap(spec, stage, f"stages.{stage}.conv{conv}")
    try:
        index = int(spec)
    except ValueError:
        hint = " or relu<stage>_<conv> (relu1_1 ...)" if card.arch == "vgg" else ""
        raise UserError(f"{option}: {spec!r} is not a layer of {backbone}: give a feature-map index "
                        f"0..{len(info) - 1}{hint}") from None
    if not -len(info) <= index < len(info):
        raise UserError(f"{option}: {backbone} has {len(info)} feature maps (0..{len(info) - 1}), not {index}")
    return Tap(str(index % len(info)), index % len(info))


class PerceptualNet(nn.Module):
    """A frozen backbone that returns the named layers of a picture in 0..1 (normalised here with
    the backbone's mean/std), running nothing past the deepest one.

    Args:
        backbone: a zoo classifier name; weights: anything ``create_model(weights=)`` takes (a
            torchvision ``.pth`` state dict, an archzoo ``.safetensors``, a shipped tag).
        content_layer, style_layers: layer names (see the module docstring); ``None``: the paper's
            (:func:`default_layers`) for ``method`` (``"gatys"`` or ``"johnson"``).
    """

    def __init__(self, backbone: str = "vgg19", content_layer: str | None = None, style_layers=None, weights=None,
                 method: str = "gatys"):
        super().__init__()
        from ..builder import create_model
        from ..features import FeatureStage

        info = _feature_info(backbone)
        default_content, default_style = default_layers(backbone, method)
        content = resolve_tap(backbone, default_content if content_layer is None else content_layer, info, "--content-layer")
        style = [resolve_tap(backbone, s, info, "--style-layers") for s in (style_layers or default_style)]
        if not style:
            raise UserError("--style-layers: name at least one layer")
        self.content_name, self.style_names = content.name, list(dict.fromkeys(t.name for t in style))
        self.taps = list({t.name: t for t in [content, *style]}.values())
        deepest = max(t.stage for t in self.taps)
        try:
            extractor = create_model(backbone, features_only=True, out_indices=(deepest,), weights=weights)
        except (ValueError, OSError) as e:
            raise UserError(f"--features-weights: {shown(weights)} does not load into {backbone}: {e}") from None
        self.backbone_name, self.weights = backbone, None if weights is None else str(weights)
        self.body = extractor.model
        card = extractor.card
        self.register_buffer("mean", torch.tensor(card.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(card.std).view(1, -1, 1, 1), persistent=False)
        inside = {t.path for t in self.taps if t.path}
        # the steps to run, Sequential steps opened where a tap lies inside them; (path, stage end?)
        self.steps: list[tuple[str, int | None]] = []
        self.stage_taps: dict[int, str | None] = {}
        for i, stage in enumerate(extractor.plan):
            assert isinstance(stage, FeatureStage)
            paths = [p for s in stage.steps for p in self._open(s, inside)]
            self.steps += [(p, i if j == len(paths) - 1 else None) for j, p in enumerate(paths)]
            self.stage_taps[i] = stage.tap
        self.requires_grad_(False)
        self.eval()

    def _open(self, path: str, inside: set[str]) -> list[str]:
        if not any(p.startswith(path + ".") for p in inside):
            return [path]
        module = self.body.get_submodule(path)
        if not isinstance(module, nn.Sequential):
            raise UserError(f"cannot tap {sorted(inside)} inside {path} of {self.backbone_name}")
        return [q for name, _ in module.named_children() for q in self._open(f"{path}.{name}", inside)]

    def train(self, mode: bool = True):  # always in eval mode: batch norm statistics stay fixed
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from ..features import _step

        state, out = (x - self.mean) / self.std, {}
        by_path = {t.path: t for t in self.taps if t.path}
        by_stage = {t.stage: t for t in self.taps if t.path is None}
        for path, stage_end in self.steps:
            state = _step(self.body.get_submodule(path), state)
            fmap = state[0] if isinstance(state, tuple) else state
            if path in by_path:
                out[by_path[path].name] = fmap.clone()  # later in-place layers must not change it
            if stage_end is not None and stage_end in by_stage:
                tap = self.stage_taps[stage_end]
                out[by_stage[stage_end].name] = self.body.get_submodule(tap)(fmap) if tap else fmap.clone()
            if len(out) == len(self.taps):
                break
        return out


class StyleLoss(nn.Module):
    """Content + style + total variation against one style picture (its Gram matrices computed
    once) for a batch of pictures and their content targets (``content_feats`` from
    :meth:`content_features`)."""

    def __init__(self, net: PerceptualNet, style: torch.Tensor, weights: LossWeights = LossWeights()):
        super().__init__()
        self.net, self.weights = net, weights
        self.content_layer, self.style_layers = net.content_name, net.style_names
        with torch.no_grad():
            feats = net(style[None] if style.ndim == 3 else style)
            self.style_grams = {k: gram_matrix(feats[k]) for k in self.style_layers}

    @torch.no_grad()
    def content_features(self, content: torch.Tensor) -> torch.Tensor:
        return self.net(content)[self.content_layer]

    def forward(self, x: torch.Tensor, content_feats: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.net(x)
        content = relative_mse(feats[self.content_layer], content_feats)
        style = sum(relative_mse(gram_matrix(feats[k]), self.style_grams[k].expand(x.shape[0], -1, -1))
                    for k in self.style_layers) / len(self.style_layers)
        tv = total_variation(x)
        w = self.weights
        return {"loss": w.content * content + w.style * style + w.tv * tv, "content": content, "style": style, "tv": tv}
