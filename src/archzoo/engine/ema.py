"""An exponential moving average of the weights (Polyak & Juditsky 1992; as used for
EfficientNet, Tan & Le 2019, arXiv:1905.11946), evaluated instead of the raw weights.

``ema = d * ema + (1 - d) * weights`` after every step, for parameters and float buffers (norm
statistics); the decay ramps up as ``min(d, (1 + n) / (10 + n))`` so early averages are not
dominated by the random initialisation.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs = None

    def _tensors(self, model: nn.Module):
        if self._pairs is None:
            ours, theirs = self.module.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
            floats = [k for k, v in ours.items() if v.is_floating_point()]
            others = [k for k, v in ours.items() if not v.is_floating_point()]
            self._pairs = ([ours[k] for k in floats], [theirs[k] for k in floats],
                           [ours[k] for k in others], [theirs[k] for k in others])
        return self._pairs

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_f, model_f, ema_o, model_o = self._tensors(model)
        torch._foreach_lerp_(ema_f, [t.detach() for t in model_f], 1.0 - d)
        if ema_o:  # integer buffers (batch-norm step counts): one fused copy, not one launch each
            torch._foreach_copy_(ema_o, model_o)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = updates
