"""Backbones from any classifier: the contract detection necks and segmentation decoders use.

**feature_info.** Every classifier lists its feature maps in ``model.feature_info``: one entry per
map, shallow to deep, with ``channels``, ``stride`` and ``module`` (the dotted name of the module
whose output the map is).

* ``stride`` is the map's reduction from the input: the distance, in input pixels, between
  neighbouring positions of the map (the product of every stride before it). Strides never
  decrease; a dilated network (``output_stride``) reports its true reduction, e.g. 8, 8, 8 for
  the last three ResNet stages at output stride 8. With "same" padding an ``H x W`` input gives
  ``ceil(H / stride)`` rows. Padding-free layers (LeNet's 5x5 convolutions, the Inception stems,
  AlexNet's pooling) also shave a fixed border off, so there the map is smaller than
  ``H / stride``; the stride is still the step: ``stride`` more input rows give one more row.
* The last map is normalised in every family: where the body ends with a norm and activation
  after its last block (pre-activation ResNets, DenseNet) the last map is that final norm's
  output, as ``forward_features`` returns it; elsewhere it is the last block's output, whose own
  last layer is normalised (MobileNet/EfficientNet list their last stage, not the 1x1 head conv,
  as timm does).

**Stages.** Every classifier says how ``forward_features`` decomposes, with
:meth:`~archzoo.models.base.Classifier.feature_stages`: one :class:`FeatureStage` per
``feature_info`` entry, the modules that, run in order on the previous stage's state, produce
that map. Most families are chains of modules and only name them (``feature_chain``, expanded by
:func:`chain_stages`); the state is then the map itself. Cell networks pass ``(current,
previous)`` cell outputs along and FractalNet ``(map, column)``: a module with a
``forward_state`` method takes and returns the whole state, any other module maps its first
element, and a stage's map is the state's first element (or ``tap`` of it).

**The backbone.** :class:`FeatureExtractor` (``create_model(..., features_only=True)`` or
:func:`features_from`) holds only the stages up to the deepest requested map, under the
classifier's module names (``extractor.model``), and runs them in sequence: no hooks, no
exceptions, nothing built that does not run. So every parameter gets a gradient (DDP without
``find_unused_parameters``), and ``torch.compile(fullgraph=True)``, ``torch.export`` and ONNX
export see one plain graph.
"""

from __future__ import annotations

import copy
from typing import Iterable, NamedTuple, Sequence

import torch
import torch.nn as nn


class FeatureInfo(list):
    """A list of ``{'channels', 'stride', 'module'}`` dicts with a few accessors."""

    def __init__(self, entries: Iterable[dict] = ()):
        super().__init__(dict(e) for e in entries)
        for i, e in enumerate(self):
            missing = {"channels", "stride", "module"} - e.keys()
            if missing:
                raise ValueError(f"feature_info[{i}] lacks {sorted(missing)}")
            if i and e["stride"] < self[i - 1]["stride"]:
                raise ValueError(f"feature_info strides must not decrease: {self.strides()}")

    def channels(self) -> list[int]:
        return [e["channels"] for e in self]

    def strides(self) -> list[int]:
        return [e["stride"] for e in self]

    def modules(self) -> list[str]:
        return [e["module"] for e in self]

    def select(self, indices: Sequence[int]) -> "FeatureInfo":
        return FeatureInfo(self[i] for i in indices)


def feature(channels: int, stride: int, module: str) -> dict:
    return {"channels": channels, "stride": stride, "module": module}


class FeatureStage(NamedTuple):
    """One feature map's share of the forward pass.

    ``steps``: dotted module paths run in order on the state; ``tap``: a module that turns the
    state's map into the feature map without changing the state (the cell networks' maps are the
    rectified cell outputs, rectified by the next cell's input ReLU), or ``None``.
    """

    steps: tuple[str, ...]
    tap: str | None = None


def chain_stages(model: nn.Module, chain: Sequence[str]) -> list[FeatureStage]:
    """The stages of a network whose ``forward_features`` runs the modules ``chain`` in order.

    A path in ``chain`` that contains a module named in ``feature_info`` is replaced by its
    children (it must then be an ``nn.Sequential``, which runs them in order); each stage ends at
    the module its ``feature_info`` entry names. Modules after the last map are not part of any
    stage (MobileNet's head convolution).
    """
    targets = list(model.feature_info.modules())
    flat = _expand(model, list(chain), targets)
    stages: list[FeatureStage] = []
    steps: list[str] = []
    for path in flat:
        steps.append(path)
        while len(stages) < len(targets) and targets[len(stages)] == path:
            stages.append(FeatureStage(tuple(steps)))
            steps = []
        if len(stages) == len(targets):
            return stages
    missing = targets[len(stages)]
    raise ValueError(f"{type(model).__name__}: feature_info names {missing!r}, which its feature_chain "
                     f"{tuple(chain)} does not run (after {stages[-1].steps[-1] if stages else 'the input'!r})")


def _expand(model: nn.Module, chain: list[str], targets: list[str]) -> list[str]:
    out = []
    for path in chain:
        inside = [t for t in targets if t.startswith(path + ".")]
        if not inside:
            out.append(path)
            continue
        module = model.get_submodule(path)
        if not isinstance(module, nn.Sequential):
            raise ValueError(f"{type(model).__name__}: feature map {inside[0]!r} lies inside {path!r}, which is not "
                             "an nn.Sequential: list the modules it runs in feature_chain")
        out += _expand(model, [f"{path}.{name}" for name, _ in module.named_children()], targets)
    return out


def resolve_out_indices(info: FeatureInfo, out_indices: Sequence[int] | None = None,
                        out_strides: Sequence[int] | None = None, owner: str = "the model") -> tuple[int, ...]:
    """The indices of ``info`` that ``out_indices`` (negative ones count from the end) or
    ``out_strides`` (for each stride, the deepest map with that reduction) select; all by default.
    Raises a ``ValueError`` naming the argument."""
    n = len(info)
    if out_indices is not None and out_strides is not None:
        raise ValueError("pass out_indices or out_strides, not both")
    if out_strides is not None:
        strides, available = _int_tuple(out_strides, "out_strides"), info.strides()
        absent = [s for s in strides if s not in available]
        if absent:
            raise ValueError(f"out_strides {absent}: {owner} has no feature map with that stride; "
                             f"available strides: {sorted(set(available))}")
        indices, arg = tuple(max(i for i, t in enumerate(available) if t == s) for s in strides), "out_strides"
    elif out_indices is None:
        return tuple(range(n))
    else:
        indices, arg = _int_tuple(out_indices, "out_indices"), "out_indices"
        bad = [i for i in indices if not -n <= i < n]
        if bad:
            raise ValueError(f"out_indices {bad} out of range: {owner} has {n} feature maps (0..{n - 1}, "
                             "or negative from the end)")
        indices = tuple(i % n for i in indices)
    if list(indices) != sorted(set(indices)):
        raise ValueError(f"{arg} must select increasing, distinct feature maps, got {out_strides if arg == 'out_strides' else out_indices}")
    return indices


def _int_tuple(values, arg: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{arg} must be a sequence of integers, got {values!r}")
    values = tuple(values)
    if not values:
        raise ValueError(f"{arg} must name at least one feature map, got an empty sequence (leave it out for all of them)")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{arg} must be integers, got {values!r}")
    return values


class FeatureExtractor(nn.Module):
    """A backbone: ``forward(x)`` returns the feature maps at ``out_indices`` as a list.

    Holds, in ``self.model``, only the modules of the stages up to the deepest requested map,
    under the classifier's names (so ``extractor.model.load_state_dict(classifier_state,
    strict=False)`` loads it, and ``feature_info``'s module names are paths in it). Nothing after
    that map is kept: no classifier, no later stages, no auxiliary heads.

    Args:
        model: a classifier (``feature_info`` and ``feature_stages()``).
        out_indices: which of ``model.feature_info`` to return (default all; negative from the end).
        out_strides: or, by reduction: for each stride, the deepest map with it.
        copy: work on a deep copy, leaving ``model`` untouched (the default). ``copy=False`` takes
            the model's modules over, leaving it unusable: for freshly built models only
            (``create_model`` does this).
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None, *,
                 out_strides: Sequence[int] | None = None, copy: bool = True):
        super().__init__()
        owner = type(model).__name__
        if not hasattr(model, "feature_info") or not hasattr(model, "feature_stages"):
            raise TypeError(f"{owner} is not an archzoo classifier (it has no feature_info / feature_stages)")
        info = FeatureInfo(model.feature_info)
        indices = resolve_out_indices(info, out_indices, out_strides, owner)
        stages = list(model.feature_stages())
        if len(stages) != len(info):
            raise ValueError(f"{owner}.feature_stages() gives {len(stages)} stages for {len(info)} feature maps")
        self.plan = tuple(stages[: indices[-1] + 1])
        self.model = _kept_modules(model, [p for s in self.plan for p in (*s.steps, *filter(None, [s.tap]))], copy)
        self.out_indices = indices
        self.feature_info = info.select(indices)
        self._take = frozenset(indices)
        for attr in ("card", "build_args"):  # for save_model / load_model
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, state = [], x
        for i, stage in enumerate(self.plan):
            for path in stage.steps:
                state = _step(_submodule(self.model, path), state)
            if i in self._take:
                fmap = state[0] if isinstance(state, tuple) else state
                maps.append(_submodule(self.model, stage.tap)(fmap) if stage.tap else fmap)
        return maps


def features_from(model: nn.Module, out_indices: Sequence[int] | None = None, *,
                  out_strides: Sequence[int] | None = None) -> FeatureExtractor:
    """A backbone made from a classifier you hold (freshly built, loaded from any checkpoint, trained):
    a :class:`FeatureExtractor` on a copy; ``model`` is not changed and still classifies."""
    return FeatureExtractor(model, out_indices, out_strides=out_strides, copy=True)


def _step(module: nn.Module, state):
    if hasattr(module, "forward_state"):
        return module.forward_state(state)
    if isinstance(state, tuple):
        return (module(state[0]), *state[1:])
    return module(state)


def _submodule(root: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        root = getattr(root, name)
    return root


class _Kept(nn.Module):
    """The modules a feature extractor runs, under the classifier's names."""


def _kept_modules(model: nn.Module, paths: list[str], copy_modules: bool) -> nn.Module:
    """A container with ``model``'s top-level children that ``paths`` reach, each pruned to what
    ``paths`` name (a named module whole, its ancestors holding only the named descendants)."""
    kept, memo = _Kept(), {}
    for name, child in model.named_children():
        if name in paths or any(p.startswith(name + ".") for p in paths):
            child = copy.deepcopy(child, memo) if copy_modules else child
            _prune(child, name, paths)
            kept.add_module(name, child)
    return kept


def _prune(module: nn.Module, prefix: str, paths: list[str]) -> None:
    if prefix in paths:
        return
    for name, child in list(module.named_children()):
        path = f"{prefix}.{name}"
        if path in paths or any(p.startswith(path + ".") for p in paths):
            _prune(child, path, paths)
        else:
            delattr(module, name)
