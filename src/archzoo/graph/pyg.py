"""PyTorch Geometric, imported on first use, without its side effects on torch.

Importing it costs about a second and warns that ``torch.jit.script`` is deprecated, which every
archzoo command would pay and print otherwise (the registry loads this package to list the graph
models). And on import it replaces ``torch.index_select`` and ``torch.select`` with Python
wrappers (for its ``HashTensor`` indices) that TorchScript cannot compile: any later
``torch.jit.script`` of code that calls them fails (effdet's matcher, a user's own scripts).
archzoo never makes a ``HashTensor``, so the originals are put back."""

from __future__ import annotations

import warnings
from functools import cache

import torch

_PATCHED_BY_PYG = ("index_select", "select")


@cache
def pyg():
    """The ``torch_geometric`` module, with ``torch_geometric.data`` and ``torch_geometric.nn`` loaded."""
    originals = {name: getattr(torch, name) for name in _PATCHED_BY_PYG}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
            import torch_geometric
            import torch_geometric.data
            import torch_geometric.nn  # noqa: F401
    finally:
        for name, function in originals.items():
            setattr(torch, name, function)
    return torch_geometric
