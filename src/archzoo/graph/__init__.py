"""Graph neural networks on images (issue 20): SLIC superpixels -> region adjacency graphs
(:mod:`.superpixels`) -> GCN, GAT and the residual gated GCN from PyTorch Geometric
(:mod:`.models`), registered as ``gcn_superpixel``, ``gat_superpixel`` and ``gatedgcn_superpixel``
with ``task="graph"``; :class:`archzoo.engine.graph.GraphTask` trains and scores them."""

from .superpixels import SuperpixelGraphs, clear_cache, draw_graph

__all__ = ["SuperpixelGraphs", "clear_cache", "draw_graph"]


def _register_graph_models() -> None:
    """Importing the models registers them (once)."""
    from . import models  # noqa: F401
