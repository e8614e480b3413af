"""Measured properties of a model: parameters, GFLOPs and CPU latency, from the real model.

GFLOPs follow the convention of torchvision's model tables and of the papers: one
multiply-accumulate counts once (so ResNet-50 is 4.1 "GFLOPs"). They are counted by
``torch.utils.flop_counter`` (convolutions, linear layers, matrix products), which reports
2 FLOPs per multiply-accumulate, halved here.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_inference_params(model: nn.Module) -> int:
    """Parameters that take part in inference: all but training-only auxiliary heads (GoogLeNet,
    Inception-v3), which models keep at ``model.aux_heads``."""
    aux = getattr(model, "aux_heads", None)
    return count_params(model) - (count_params(aux) if aux is not None else 0)


@torch.no_grad()
def count_gflops(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """Multiply-accumulates (in billions) of one forward pass on one image of ``input_size``.

    For a detector, the network proper (``forward_batch``: backbone, neck, head on an already
    resized batch), as the papers count it: resizing, decoding and NMS are not included.
    ``None`` for a model that is not a tensor graph (``tensor_graph = False``: the DPM)."""
    if not getattr(model, "tensor_graph", True):
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_size, device=device)
    with FlopCounterMode(display=False) as counter:
        getattr(model, "forward_batch", model)(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def model_stats(name: str, input_size: tuple[int, int, int] | None = None) -> dict:
    """Parameters and GFLOPs of registered model ``name`` at ``input_size`` (default: the card's).

    ``params`` counts what inference uses; ``params_with_aux`` adds training-only auxiliary heads.

    The model is built on PyTorch's meta device, where tensors have shapes but no data, so even
    the largest networks are measured in a fraction of a second and without memory.
    """
    from .builder import create_model
    from .registry import model_card

    input_size = tuple(input_size or model_card(name).input_size)

    def measure(model):
        return {"params": count_inference_params(model), "params_with_aux": count_params(model),
                "gflops": count_gflops(model, input_size), "input_size": input_size}

    try:
        with torch.device("meta"):
            return measure(create_model(name))
    except (NotImplementedError, RuntimeError):  # an operation without a meta kernel: measure for real
        return measure(create_model(name))


@torch.no_grad()
def measure_latency(model: nn.Module, input_size: tuple[int, int, int], repeats: int = 10, warmup: int = 2) -> float:
    """Median wall-clock milliseconds of a batch-1 forward pass in eval mode on the CPU."""
    was_training = model.training
    model.eval()
    x = torch.randn(1, *input_size)
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
    model.train(was_training)
    return statistics.median(times) * 1e3
