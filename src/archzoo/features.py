"""Feature pyramids from any classifier: the contract detection necks and segmentation decoders use.

Every classifier lists its feature maps in ``model.feature_info``: one entry per stage output,
with ``channels``, ``stride`` (reduction from the input) and ``module`` (the dotted name of the
module whose output it is), strides never decreasing. :class:`FeatureExtractor` turns the
classifier into a module that returns those maps as a list.
"""

from __future__ import annotations

from typing import Iterable, Sequence

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


class _Done(Exception):
    """Raised by the last hook to stop the forward pass once every requested map is captured."""


class FeatureExtractor(nn.Module):
    """Wraps a classifier; ``forward(x)`` returns the feature maps at ``out_indices``.

    Works for every model without model-specific code: forward hooks on the modules named in
    ``feature_info`` capture the maps while ``forward_features`` runs, and the pass stops right
    after the deepest requested map. The wrapper takes the model over: its classifier head is
    removed in place (``reset_classifier(0)``), so wrap a copy to keep using the classifier.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None):
        super().__init__()
        info = FeatureInfo(model.feature_info)
        n = len(info)
        if out_indices is None:
            out_indices = tuple(range(n))
        out_indices = tuple(i % n if -n <= i < n else i for i in out_indices)
        bad = [i for i in out_indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"out_indices {bad} out of range: {type(model).__name__} has {n} feature maps (0..{n - 1})")
        if list(out_indices) != sorted(set(out_indices)):
            raise ValueError(f"out_indices must be increasing and unique, got {out_indices}")
        if hasattr(model, "reset_classifier"):
            model.reset_classifier(0)
        self.model = model
        self.out_indices = out_indices
        self.feature_info = info.select(out_indices)
        self._modules_by_name = dict(model.named_modules())
        for name in self.feature_info.modules():
            if name not in self._modules_by_name:
                raise ValueError(f"feature_info names module {name!r}, which {type(model).__name__} does not have")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        names = self.feature_info.modules()
        captured: dict[str, torch.Tensor] = {}
        last = names[-1]

        def hook(name):
            def fn(module, inputs, output):
                captured[name] = output
                if name == last and len(captured) == len(names):
                    raise _Done

            return fn

        handles = [self._modules_by_name[n].register_forward_hook(hook(n)) for n in dict.fromkeys(names)]
        try:
            self.model.forward_features(x)
        except _Done:
            pass
        finally:
            for h in handles:
                h.remove()
        missing = [n for n in names if n not in captured]
        if missing:
            raise RuntimeError(f"forward_features never ran modules {missing}")
        return [captured[n] for n in names]
