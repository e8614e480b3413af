"""Compound scaling as a tool — Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", arXiv:1905.11946, Section 3.3.

Scale a network's depth by ``alpha**phi``, its width by ``beta**phi`` and its input resolution by
``gamma**phi`` together, with ``alpha * beta**2 * gamma**2 ~= 2`` so that each step of ``phi``
roughly doubles the multiply-adds (they grow linearly with depth and quadratically with width and
resolution). The paper's coefficients are ``alpha = 1.2``, ``beta = 1.1``, ``gamma = 1.15``, found
by a small grid search at ``phi = 1`` (:func:`search_coefficients` repeats it on a proxy task).

Any registered block-string network (:mod:`archzoo.blockstring`: MobileNetV2, EfficientNet) can be
scaled: every width is multiplied and rounded to a multiple of 8 (never down by more than 10%),
every stage's repeats multiplied and rounded up, exactly as the EfficientNet variants are built
(:func:`archzoo.layers.scale_stages`). The result is registered under a new name and builds with
:func:`archzoo.create_model`.

The published EfficientNet-B1..B7 do *not* follow ``alpha**phi`` etc.: their (width, depth,
resolution) were rounded by hand (B1 is width 1.0, depth 1.1 at 240 px, not 1.1 / 1.2 / 258). The
``"efficientnet"`` preset uses that published table (``EFFICIENTNET_VARIANTS``) for integer
``phi`` 0..7, so ``compound_scale("efficientnet_b0", k, preset="efficientnet")`` rebuilds B``k``;
``docs/scaling.md`` compares both.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
from dataclasses import asdict, dataclass, field, replace

from .validate import UserError

PAPER_ALPHA, PAPER_BETA, PAPER_GAMMA = 1.2, 1.1, 1.15
PRESETS = ("efficientnet",)

_SCALED: dict[str, dict] = {}  # names registered by compound_scale -> their build kwargs


@dataclass(frozen=True)
class ScaledNetwork:
    """A compound-scaled network: ``create_model(base, **kwargs)`` builds the same as ``create_model(name)``.

    ``depth``, ``width`` and ``resolution_factor`` are this scaling's multipliers (relative to
    ``base``); ``width_mult`` / ``depth_mult`` the totals the network is built with (relative to the
    base's unscaled block strings); ``stages`` the scaled block strings (rounded widths and repeats).
    """

    name: str
    base: str
    phi: float
    alpha: float | None
    beta: float | None
    gamma: float | None
    preset: str | None
    depth: float
    width: float
    resolution_factor: float
    resolution: int
    width_mult: float
    depth_mult: float
    stages: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)

    @property
    def flops_factor(self) -> float:
        """``depth * width**2 * resolution_factor**2``: the predicted growth of multiply-adds."""
        return self.depth * self.width**2 * self.resolution_factor**2

    def to_dict(self) -> dict:
        return {**asdict(self), "flops_factor": self.flops_factor}


def _base_entry(base: str):
    from .registry import get_entry

    if not isinstance(base, str):
        raise UserError(f"base must be a model name, got {base!r}")
    try:
        entry = get_entry(base)
    except KeyError as e:
        raise UserError(f"base: {e.args[0]}") from None
    if _base_arch(entry) is None:
        raise UserError(f"base: {base!r} is not a block-string network; scalable ones: {', '.join(scalable_models())}")
    return entry


def _base_arch(entry):
    """The block strings of a registered network built from them with width and depth multipliers, else None."""
    try:
        params = inspect.signature(entry.builder).parameters
    except (TypeError, ValueError):
        return None
    if not {"arch", "width_mult", "depth_mult"} <= set(params):
        return None
    return entry.card.kwargs.get("arch", params["arch"].default)


def scalable_models() -> list[str]:
    """Registered networks written as block strings with width and depth multipliers."""
    from .registry import get_entry, list_models

    return [n for n in list_models(task="classification") if _base_arch(get_entry(n)) is not None]


def _check_number(name: str, value, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < low:
        raise UserError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return float(value)


def preset_coefficients(preset: str, phi: float) -> tuple[float, float, float, float]:
    """``(width, depth, resolution_factor, dropout)`` of a published table at integer ``phi``.

    ``"efficientnet"``: the EfficientNet paper's B0..B7 (width, depth, resolution / 224, dropout)."""
    if preset not in PRESETS:
        raise UserError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    from .models.efficientnet import EFFICIENTNET_VARIANTS

    table = list(EFFICIENTNET_VARIANTS.values())
    if phi != int(phi) or not 0 <= phi < len(table):
        raise UserError(f"phi must be a whole number from 0 to {len(table) - 1} with preset {preset!r} "
                        f"(EfficientNet-B0..B{len(table) - 1}), got {phi!r}")
    width, depth, resolution, dropout = table[int(phi)]
    return width, depth, resolution / table[0][2], dropout


def compound_scale(base: str, phi: float, alpha: float = PAPER_ALPHA, beta: float = PAPER_BETA,
                   gamma: float = PAPER_GAMMA, *, preset: str | None = None, name: str | None = None,
                   register: bool = True) -> ScaledNetwork:
    """Scale block-string network ``base`` by compound coefficient ``phi``.

    Depth ``alpha**phi``, width ``beta**phi``, resolution ``gamma**phi`` (rounded to whole pixels);
    with ``preset="efficientnet"`` the published B``phi`` coefficients instead (and its dropout).
    The multipliers compose with the base's own (scaling ``efficientnet_b1`` scales B0's table by
    B1's multipliers times these). ``register`` adds the result to the registry as ``name``
    (default ``<base>_phi<phi>``, with a preset ``<base>_phi<phi>_<preset>``); registering the same network under
    the same name again is allowed, another network under a taken name is not.
    """
    from .blockstring import format_stages, parse_stages
    from .layers import scale_stages

    entry = _base_entry(base)
    phi = _check_number("phi", phi, 0.0)
    kwargs = dict(entry.card.kwargs)
    if preset is not None:
        width, depth, res_factor, dropout = preset_coefficients(preset, phi)
        alpha = beta = gamma = None
        kwargs["drop_rate"] = dropout
    else:
        alpha, beta, gamma = (_check_number(k, v, 1.0) for k, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
        depth, width, res_factor = alpha**phi, beta**phi, gamma**phi
    width_mult = kwargs.get("width_mult", 1.0) * width
    depth_mult = kwargs.get("depth_mult", 1.0) * depth
    kwargs.update(width_mult=width_mult, depth_mult=depth_mult)
    resolution = round(entry.card.input_size[1] * res_factor)
    if name is None:
        name = f"{base}_phi{phi:g}" + (f"_{preset}" if preset else "")
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise UserError(f"name must be a non-empty model name without spaces, got {name!r}")
    stages = format_stages(scale_stages(parse_stages(_base_arch(entry)), width_mult, depth_mult))
    result = ScaledNetwork(name=name, base=base, phi=phi, alpha=alpha, beta=beta, gamma=gamma, preset=preset,
                           depth=depth, width=width, resolution_factor=res_factor, resolution=resolution,
                           width_mult=width_mult, depth_mult=depth_mult, stages=stages, kwargs=kwargs)
    if register:
        register_scaled(result)
    return result


def register_scaled(result: ScaledNetwork) -> None:
    """Register ``result`` under ``result.name``: the base's card with the scaled size and arguments."""
    from .registry import _REGISTRY, get_entry, register_model

    entry = get_entry(result.base)
    if result.name in _REGISTRY:
        if _SCALED.get(result.name) == result.kwargs:
            return
        raise UserError(f"name: a model {result.name!r} is already registered; choose another --name")
    c = entry.card.input_size[0]
    size = (c, result.resolution, result.resolution)
    how = (f"the {result.preset} preset at phi={result.phi:g}" if result.preset else
           f"phi={result.phi:g}, alpha={result.alpha:g}, beta={result.beta:g}, gamma={result.gamma:g}")
    card = replace(entry.card, name=result.name, reference=None, input_size=size, kwargs=result.kwargs,
                   default_weights=replace(entry.card.default_weights, input_size=size),
                   notes=f"{result.base} compound-scaled ({how}): depth x{result.depth:.4g}, width x{result.width:.4g}, "
                         f"resolution {result.resolution}.")
    register_model(card, entry.builder)
    _SCALED[result.name] = result.kwargs


def unregister_scaled(name: str) -> None:
    """Remove a network that :func:`compound_scale` registered (registered families are not touched)."""
    from .registry import _REGISTRY

    if name not in _SCALED:
        raise UserError(f"name: {name!r} was not registered by compound_scale")
    del _SCALED[name]
    _REGISTRY.pop(name, None)


def measure(result: ScaledNetwork, input_size: tuple[int, int, int] | None = None,
            num_classes: int | None = None) -> dict:
    """Parameters and GFLOPs (multiply-adds, :mod:`archzoo.profile`) of a scaled network at its
    resolution (or ``input_size``, whose channels it is built for), built on the meta device."""
    import torch

    from .builder import create_model
    from .profile import count_gflops, count_inference_params
    from .registry import model_card

    c = model_card(result.base).input_size[0]
    input_size = tuple(input_size or (c, result.resolution, result.resolution))
    overrides = {k: v for k, v in result.kwargs.items() if k in ("width_mult", "depth_mult", "drop_rate")}
    overrides.update(in_chans=input_size[0], num_classes=num_classes)
    try:
        with torch.device("meta"):
            model = create_model(result.base, **overrides)
            return {"params": count_inference_params(model), "gflops": count_gflops(model, input_size),
                    "input_size": list(input_size)}
    except (NotImplementedError, RuntimeError):  # an operation without a meta kernel: measure for real
        model = create_model(result.base, **overrides)
        return {"params": count_inference_params(model), "gflops": count_gflops(model, input_size),
                "input_size": list(input_size)}


# --- the grid search for alpha, beta, gamma (the paper's step 1) --------------------------------------

def coefficient_grid(alphas, betas, gammas, target: float = 2.0, tolerance: float = 0.1) -> list[tuple[float, float, float]]:
    """Every ``(alpha, beta, gamma)`` of the three lists (each >= 1) whose ``alpha * beta**2 *
    gamma**2`` lies within ``tolerance`` (relative) of ``target``, the paper's constraint."""
    for label, values in (("alphas", alphas), ("betas", betas), ("gammas", gammas)):
        if not values:
            raise UserError(f"{label} must list at least one value")
        for v in values:
            _check_number(label, v, 1.0)
    _check_number("tolerance", tolerance, 0.0)
    return [(a, b, g) for a, b, g in itertools.product(alphas, betas, gammas)
            if abs(a * b * b * g * g - target) <= tolerance * target]


def search_coefficients(base: str, grid: list[tuple[float, float, float]] | None = None, *, data="digits",
                        image_size: int = 32, epochs: int = 2, train_limit: int | None = None,
                        val_limit: int | None = None, batch_size: int = 64, seed: int = 0, device: str = "cpu",
                        progress=None) -> list[dict]:
    """The paper's small grid search at ``phi = 1`` on a proxy task.

    For each ``(alpha, beta, gamma)`` of ``grid`` (default: :func:`coefficient_grid` over 1.0 ..
    1.4 in steps of 0.1 within 10% of ``alpha * beta**2 * gamma**2 = 2``), the base scaled by
    ``alpha`` / ``beta`` and trained from scratch with the training engine (:func:`archzoo.train`)
    on ``data`` at ``round(image_size * gamma)`` pixels for ``epochs``; the base itself (phi = 0)
    is trained too, for reference. Returns one row per candidate, best validation accuracy first
    (ties: fewer multiply-adds): the coefficients, the predicted FLOPs factor, the proxy
    resolution, parameters, GFLOPs at that resolution, accuracy and seconds.
    """
    from .engine.api import train

    _base_entry(base)
    grid = coefficient_grid([1.0, 1.1, 1.2, 1.3, 1.4], [1.0, 1.1, 1.2, 1.3, 1.4], [1.0, 1.1, 1.2, 1.3, 1.4]) \
        if grid is None else [tuple(float(_check_number("grid", v, 1.0)) for v in abc) for abc in grid]
    if not grid:
        raise UserError("the grid holds no (alpha, beta, gamma) within the tolerance of alpha * beta^2 * gamma^2 = 2")
    rows = []
    for i, (a, b, g) in enumerate([(1.0, 1.0, 1.0)] + list(grid)):
        scaled = compound_scale(base, 1.0, a, b, g, register=False)
        side = max(1, round(image_size * g))
        t = time.perf_counter()
        summary = train(base, data, model_kwargs={"width_mult": scaled.width_mult, "depth_mult": scaled.depth_mult},
                        image_size=side, epochs=epochs, batch_size=batch_size, train_limit=train_limit,
                        val_limit=val_limit, seed=seed, log="quiet", device=device, flip=False)
        in_chans = summary["input_size"][0]
        stats = measure(scaled, (in_chans, side, side), num_classes=len(summary["class_names"]))
        row = {"alpha": a, "beta": b, "gamma": g, "flops_factor": a * b * b * g * g, "baseline": i == 0,
               "image_size": side, "params": summary["params"], "gflops": stats["gflops"],
               "val_accuracy": summary["val_accuracy"], "seconds": time.perf_counter() - t}
        rows.append(row)
        if progress is not None:
            progress(row)
    return sorted(rows, key=lambda r: (-(r["val_accuracy"] or 0.0), r["gflops"]))
