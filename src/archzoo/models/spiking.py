"""Spiking networks — leaky integrate-and-fire neurons trained with surrogate gradients (snntorch).

Papers: Eshraghian et al. 2023, "Training Spiking Neural Networks Using Lessons From Deep
Learning" (Proc. IEEE, arXiv:2109.12894), whose snntorch library supplies the neuron
(``snntorch.Leaky``), the surrogate gradient (``surrogate.fast_sigmoid``, Zenke & Ganguli 2018)
and the input coding (``snntorch.spikegen``); Neftci, Mostafa & Zenke 2019, "Surrogate Gradient
Learning in Spiking Neural Networks" (arXiv:1901.09948).

A leaky integrate-and-fire (LIF) neuron keeps a membrane potential ``u`` over time steps:
``u[t] = beta * u[t-1] + I[t] - S[t-1] * threshold`` and fires ``S[t] = (u[t] > threshold)``.
The step has no useful derivative; training backpropagates through time with the derivative of
a fast sigmoid in its place. Each convolution (and F6) is followed by batch norm over all time
steps and images, as in tdBN (Zheng et al. 2021, arXiv:2011.05280): without it the deeper layers
of a freshly initialised net never reach the threshold, stay silent, and nothing trains.

Layout: time is folded into the batch. A static image ``[B, C, H, W]`` is coded as spikes
``[T * B, C, H, W]`` (time-major), so every convolution, pooling and linear layer runs all time
steps at once, unchanged; only the LIF layers unfold ``[T, B, ...]`` and step through time. The
feature maps of ``forward_features`` and a ``features_only`` backbone are therefore spike maps
with ``T * B`` rows (``direct`` coding: the first convolution sees the image once, ``[B]`` rows,
and its current is fed to the first LIF layer at every step). The logits are the membrane
potential of non-firing output neurons averaged over the steps (an integrator readout), so the
usual cross-entropy trains the net and ``archzoo train`` needs nothing special.

Codings (``coding=``): ``direct`` (default; the analog image as a constant input current),
``rate`` (each pixel fires with probability equal to its intensity in [0, 1] at every step) and
``latency`` (each pixel fires once, brighter pixels earlier). Rate coding is random: in eval mode
it draws from a fixed seed, so a trained model's predictions are repeatable.

``model.spike_counts()`` gives the spikes per image of each LIF layer in the last forward pass
(an energy proxy: on neuromorphic hardware energy scales with spikes, not with multiply-adds);
``spiking_from(model)`` turns a small conv/linear + ReLU zoo net into a spiking one.
"""

from __future__ import annotations

import copy
from functools import partial

import snntorch
import torch
import torch.nn as nn
from snntorch import spikegen, surrogate

from ..features import FeatureInfo, feature
from ..layers import ConvNormAct
from ..registry import family_card, register_variants
from ..validate import UserError
from .base import Classifier

CODINGS = ("direct", "rate", "latency")
EVAL_SEED = 0  # rate coding in eval mode draws its spikes from this seed


class SpikeEncoder(nn.Module):
    """A static image ``[B, C, H, W]`` (intensities in [0, 1]) -> spikes ``[T * B, C, H, W]``;
    ``direct`` coding returns the image itself (the first LIF layer repeats its input current)."""

    def __init__(self, num_steps: int, coding: str = "direct"):
        super().__init__()
        self.num_steps, self.coding = num_steps, coding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coding == "direct":
            return x
        x = x.clamp(0, 1)
        if self.coding == "latency":
            spikes = spikegen.latency(x, num_steps=self.num_steps, tau=5, threshold=0.01, normalize=True,
                                      linear=True, clip=True)
        elif self.training:
            spikes = spikegen.rate(x, num_steps=self.num_steps)
        else:  # repeatable predictions: a fixed seed, the caller's random state untouched
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(EVAL_SEED)
                spikes = spikegen.rate(x, num_steps=self.num_steps)
        return spikes.flatten(0, 1)

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, coding={self.coding!r}"


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons (``snntorch.Leaky``, fast-sigmoid surrogate gradient) over
    ``num_steps`` time steps: input currents ``[T * B, ...]`` (or ``[B, ...]`` with ``repeat``:
    the same current at every step) -> spikes ``[T * B, ...]``. Records its spikes per image."""

    def __init__(self, num_steps: int, beta: float = 0.9, threshold: float = 1.0, slope: float = 25.0,
                 repeat: bool = False):
        super().__init__()
        self.num_steps, self.repeat = num_steps, repeat
        # snntorch reads its buffers as Python numbers when built: build it on the CPU even when
        # the model is built on the meta device (archzoo builds there before loading weights)
        with torch.device("cpu"):
            self.neuron = snntorch.Leaky(beta=beta, threshold=threshold, spike_grad=surrogate.fast_sigmoid(slope=slope),
                                         reset_mechanism="subtract")
        self.last_spikes: torch.Tensor | None = None  # spikes per image in the last forward pass

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        steps = self.num_steps
        if self.repeat:
            current = current.unsqueeze(0).expand(steps, *current.shape)
        else:
            current = current.unflatten(0, (steps, -1))
        mem = torch.zeros_like(current[0])
        spikes = []
        for t in range(steps):
            spk, mem = self.neuron(current[t], mem)
            spikes.append(spk)
        out = torch.stack(spikes)
        if not torch.compiler.is_compiling():
            self.last_spikes = out.detach().sum() / out.shape[1]
        return out.flatten(0, 1)

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, repeat={self.repeat}"


def time_mean(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """``[T * B, ...]`` -> the average over the ``T`` steps, ``[B, ...]``."""
    return x.unflatten(0, (num_steps, -1)).mean(0)


class SpikingHead(nn.Module):
    """F6 as 84 LIF neurons, then an integrator readout: the logits are the output layer's input
    current averaged over time (the membrane of non-firing neurons, divided by ``T``)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int, num_steps: int, beta: float):
        super().__init__()
        self.num_steps, self.hidden_size = num_steps, hidden
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(in_features, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.lif = LIF(num_steps, beta)
        self.fc = nn.Linear(hidden, num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.hidden_size, num_classes)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        spikes = self.lif(self.bn(self.fc1(self.flatten(x))))
        if pre_logits:
            return time_mean(spikes, self.num_steps)  # the hidden neurons' firing rates
        return time_mean(self.fc(spikes), self.num_steps)


class SpikingLeNet5(Classifier):
    """LeNet-5's layout with LIF neurons for activations (the snntorch tutorial's convolutional SNN):
    C1 5x5 conv (6) + BN -> 2x2 max pool -> LIF -> C3 5x5 conv (16) + BN -> pool -> LIF -> C5 5x5
    conv (120) + BN -> LIF -> F6 (84) + BN -> LIF -> output current averaged over ``num_steps``.
    """

    feature_chain = ("encode", "c1", "s2", "lif1", "c3", "s4", "lif2", "c5", "lif3")

    def __init__(self, num_classes: int = 10, in_chans: int = 1, num_steps: int = 10, coding: str = "direct",
                 beta: float = 0.9, drop_rate: float = 0.0):
        super().__init__()
        if coding not in CODINGS:
            raise UserError(f"coding: must be one of {', '.join(CODINGS)}, got {coding!r}")
        if int(num_steps) != num_steps or num_steps < 1:
            raise UserError(f"num_steps: must be a whole number >= 1, got {num_steps!r}")
        self.num_steps, self.coding = int(num_steps), coding
        self.encode = SpikeEncoder(self.num_steps, coding)
        conv = partial(ConvNormAct, kernel_size=5, padding=0, act_layer=None)  # conv + batch norm
        self.c1 = conv(in_chans, 6)
        self.s2 = nn.MaxPool2d(2)
        self.lif1 = LIF(self.num_steps, beta, repeat=coding == "direct")
        self.c3 = conv(6, 16)
        self.s4 = nn.MaxPool2d(2)
        self.lif2 = LIF(self.num_steps, beta)
        self.c5 = conv(16, 120)
        self.lif3 = LIF(self.num_steps, beta)
        self.feature_info = FeatureInfo([feature(6, 2, "lif1"), feature(16, 4, "lif2"), feature(120, 4, "lif3")])
        self.num_features, self.num_classes = 120, num_classes
        self.head = SpikingHead(120, num_classes, 84, self.num_steps, beta)
        self.head_hidden_size = 84

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lif1(self.s2(self.c1(self.encode(x))))
        x = self.lif2(self.s4(self.c3(x)))
        return self.lif3(self.c5(x))

    def spike_counts(self) -> dict[str, float]:
        """Spikes per image of each LIF layer in the last forward pass (averaged over the batch)."""
        return spike_counts(self)

    @property
    def spike_count(self) -> float:
        """All spikes per image in the last forward pass (the input's spikes not included)."""
        return sum(spike_counts(self).values())


def spike_counts(model: nn.Module) -> dict[str, float]:
    """Spikes per image of each :class:`LIF` layer of ``model`` in its last forward pass."""
    return {name: float(m.last_spikes) for name, m in model.named_modules()
            if isinstance(m, LIF) and m.last_spikes is not None}


class SpikingWrapper(nn.Module):
    """A converted net: the image is fed as a constant current (direct coding) for ``num_steps``
    steps, folded into the batch; the inner net's ReLUs are LIF layers; logits averaged over time."""

    def __init__(self, net: nn.Module, num_steps: int):
        super().__init__()
        self.net, self.num_steps = net, num_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).expand(self.num_steps, *x.shape).flatten(0, 1)
        return time_mean(self.net(x), self.num_steps)

    def spike_counts(self) -> dict[str, float]:
        return spike_counts(self)

    @property
    def spike_count(self) -> float:
        return sum(spike_counts(self).values())


def spiking_from(model: nn.Module, num_steps: int = 10, beta: float = 0.9) -> SpikingWrapper:
    """A spiking copy of ``model``, layer by layer: every ``nn.ReLU`` becomes a :class:`LIF` layer;
    convolutions, pooling, linear layers (and their weights) are kept. Time is folded into the
    batch, so any net whose layers treat batch rows independently (conv/linear/pool + ReLU, as
    LeNet-like, AlexNet, VGG) works; the copy is trained like any model (surrogate gradients).
    ``model`` itself is not changed. A net without ReLU modules (functional ReLUs, other
    activations) is refused: converting it would silently leave it non-spiking."""
    if int(num_steps) != num_steps or num_steps < 1:
        raise UserError(f"num_steps: must be a whole number >= 1, got {num_steps!r}")
    net = copy.deepcopy(model)
    replaced = 0
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, LIF(int(num_steps), beta))
                replaced += 1
    if not replaced:
        raise UserError(f"model: {type(model).__name__} has no nn.ReLU modules to turn into spiking neurons "
                        "(spiking_from converts conv/linear + ReLU nets)")
    return SpikingWrapper(net, int(num_steps))


card = family_card(
    input_convs=("c1.conv",),
    family="spiking",
    year=2021,
    paper="Eshraghian et al., Training Spiking Neural Networks Using Lessons From Deep Learning, arXiv:2109.12894 "
          "(LIF neurons with surrogate gradients: Neftci, Mostafa & Zenke, arXiv:1901.09948; layout: LeCun et al. 1998)",
    tricks=("conv_pool_stack", "batch_norm", "leaky_integrate_and_fire", "surrogate_gradient", "spike_coding"),
)

register_variants(SpikingLeNet5, [
    card("spiking_lenet5", dataset="MNIST", input_size=(1, 32, 32), min_input_size=(1, 32, 32), mean=(0.0,), std=(1.0,),
         num_classes=10, cam_layer="s2",  # a [B]-row map (direct coding); later maps have T * B rows
         notes="LeNet-5's convolutions (with batch norm) and leaky integrate-and-fire neurons (snntorch.Leaky, beta 0.9, threshold 1, "
               "reset by subtraction, fast-sigmoid surrogate gradient) instead of tanh, run for num_steps time steps "
               "(default 10) with coding='direct' (default), 'rate' or 'latency'. Time is folded into the batch: "
               "feature maps have num_steps * B rows. Logits: the output layer's current averaged over time. "
               "Inputs: intensities in [0, 1] (mean 0, std 1). model.spike_counts() gives spikes per image."),
])
