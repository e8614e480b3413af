"""Data-parallel training across processes (``torchrun --nproc_per_node N -m archzoo train ...``).

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`setup` then joins the process
group (NCCL on CUDA, gloo on CPU) and the trainer wraps the model in DistributedDataParallel.
Only rank 0 logs and writes files. Without torchrun everything here is a no-op.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as td


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def enabled() -> bool:
    return td.is_available() and td.is_initialized()


def rank() -> int:
    return td.get_rank() if enabled() else 0


def world_size() -> int:
    return td.get_world_size() if enabled() else 1


def is_main() -> bool:
    return rank() == 0


def setup(device: str | None = None) -> torch.device:
    """Join the process group when launched by torchrun; return this process's device."""
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if launched() and not enabled():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
        td.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if enabled() else torch.cuda.current_device())
    return torch.device(device or "cpu")


def teardown() -> None:
    if enabled():
        td.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if not enabled():
        return t
    t = t.clone()
    td.all_reduce(t)
    return t


def all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    """The same-shaped tensor from every process (rank order)."""
    if not enabled():
        return [t]
    out = [torch.empty_like(t) for _ in range(world_size())]
    td.all_gather(out, t.contiguous())
    return out


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every process if it is true on any (e.g. a non-finite loss seen by one rank)."""
    if not enabled():
        return flag
    t = torch.tensor([int(flag)], device=device)
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())
