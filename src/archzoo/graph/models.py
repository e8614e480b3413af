"""Graph networks that classify images as superpixel graphs: GCN, GAT and the residual gated GCN.

Papers: Kipf & Welling 2016, "Semi-Supervised Classification with Graph Convolutional Networks"
(arXiv:1609.02907); Velickovic et al. 2017, "Graph Attention Networks" (arXiv:1710.10903);
Bresson & Laurent 2017, "Residual Gated Graph ConvNets" (arXiv:1711.07553). The setting and the
sizes are those of Dwivedi et al. 2020, "Benchmarking Graph Neural Networks" (arXiv:2003.00982):
CIFAR-10 and MNIST as SLIC superpixel graphs (Knyazev et al. 2019, arXiv:1905.02161), 4 layers
of about 100k parameters in all, each layer followed by batch norm, ReLU, dropout and a
residual connection, the nodes averaged (mean readout) and classified by a 3-layer MLP. The
message passing is PyTorch Geometric's (``GCNConv``, ``GATConv``, ``ResGatedGraphConv``).

One layer, ``h <- h + dropout(relu(bn(conv(h, edges))))``, with ``conv``:

* GCN: ``h_i' = sum_j w_ij / sqrt(d_i d_j) W h_j`` over the neighbours and the node itself
  (``w_ij``: the edge's kernel weight, see :mod:`.superpixels`);
* GAT: ``h_i' = ||_heads sum_j softmax_j(a^T [W h_i || W h_j || W_e e_ij]) W h_j``, 8 heads;
* gated GCN: ``h_i' = W_1 h_i + sum_j sigmoid(W_3 h_i + W_4 h_j + W_5 e_ij) * W_2 h_j``.

A model takes images ``[B, C, H, W]`` with intensities in [0, 1] (the card's mean 0, std 1), as
every zoo classifier takes images, and turns them into graphs itself
(:class:`~.superpixels.SuperpixelGraphs`, cached), so ``archzoo train``, ``eval`` and
``predict`` feed it like any classifier; it takes a ready ``torch_geometric`` ``Batch`` (or
``Data``) too. The superpixel settings (``n_segments``, ``compactness``, ``knn``) are model
arguments, stored in every checkpoint, so a trained model always sees graphs made as in training.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from typing import TYPE_CHECKING

from ..registry import family_card, register_model
from ..validate import UserError
from .pyg import pyg
from .superpixels import SuperpixelGraphs

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

CONVS = ("gcn", "gat", "gatedgcn")


class GraphLayer(nn.Module):
    """One message-passing layer of the benchmark: conv -> batch norm -> ReLU -> dropout, plus the input."""

    def __init__(self, conv: str, width: int, heads: int = 1, drop_rate: float = 0.0, residual: bool = True):
        super().__init__()
        self.kind = conv
        if conv == "gcn":
            self.conv = pyg().nn.GCNConv(width, width)
        elif conv == "gat":
            self.conv = pyg().nn.GATConv(width, width // heads, heads=heads, edge_dim=1)
        else:
            self.conv = pyg().nn.ResGatedGraphConv(width, width, edge_dim=1)
        self.norm = nn.BatchNorm1d(width)
        self.drop = nn.Dropout(drop_rate)
        self.residual = residual

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        if self.kind == "gcn":
            out = self.conv(h, edge_index, edge_attr.view(-1))  # the edge kernel as GCN's edge weight
        else:
            out = self.conv(h, edge_index, edge_attr)
        out = self.drop(torch.relu(self.norm(out)))
        return h + out if self.residual else out


class MLPReadout(nn.Module):
    """The benchmark's classifier of the pooled graph vector: width -> width/2 -> width/4 -> classes."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(), nn.Linear(width // 2, width // 4), nn.ReLU())
        self.hidden = width // 4
        self.fc = nn.Linear(self.hidden, num_classes) if num_classes else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.hidden, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.mlp(x)
        return x if pre_logits else self.fc(x)


class SuperpixelGNN(nn.Module):
    """Images (or graphs) -> node embedding -> ``depth`` :class:`GraphLayer` s -> mean readout -> MLP.

    ``conv``: ``"gcn"``, ``"gat"`` (``heads`` heads of ``width // heads``) or ``"gatedgcn"``;
    ``n_segments``, ``compactness``, ``knn``: how images become graphs (:class:`SuperpixelGraphs`).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, conv: str = "gcn", width: int = 146, depth: int = 4,
                 heads: int = 1, n_segments: int = 150, compactness: float = 10.0, knn: int = 0,
                 drop_rate: float = 0.0, residual: bool = True):
        super().__init__()
        if conv not in CONVS:
            raise UserError(f"conv: must be one of {', '.join(CONVS)}, got {conv!r}")
        for name, value, low in (("width", width, 4), ("depth", depth, 1), ("heads", heads, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"{name}: must be a whole number >= {low}, got {value!r}")
        if width % heads:
            raise UserError(f"width: {width} must be a multiple of heads ({heads}): each head gives width // heads")
        self.graphs = SuperpixelGraphs(n_segments, compactness, knn)
        self.in_chans, self.num_classes, self.num_features = in_chans, num_classes, width
        self.embed = nn.Linear(in_chans + self.graphs.node_features, width)  # colour, y, x, size -> width
        self.layers = nn.ModuleList(GraphLayer(conv, width, heads, drop_rate, residual) for _ in range(depth))
        self.head = MLPReadout(width, num_classes)

    def to_graphs(self, images: torch.Tensor) -> Batch:
        """The superpixel graphs of images ``[B, C, H, W]`` in [0, 1], as one ``Batch`` on their device."""
        if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[1] != self.in_chans:
            raise UserError(f"images: the model takes {self.in_chans}-channel images, got {images.shape[1]} channels")
        return self.graphs.batch(images)

    def forward_nodes(self, graph: Data) -> torch.Tensor:
        """Node embeddings ``[N, width]`` after the last layer."""
        if graph.x.shape[-1] != self.embed.in_features:
            raise UserError(f"graph: nodes need {self.embed.in_features} features ({self.in_chans} colour channels, "
                            f"y, x, size), got {graph.x.shape[-1]}")
        edge_attr = graph.edge_attr if graph.edge_attr is not None else graph.x.new_ones(graph.edge_index.shape[1], 1)
        h = self.embed(graph.x)
        for layer in self.layers:
            h = layer(h, graph.edge_index, edge_attr)
        return h

    def forward_head(self, pooled: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(pooled, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)
        self.num_classes = num_classes

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def forward(self, x: torch.Tensor | Data) -> torch.Tensor:
        graph = x if isinstance(x, pyg().data.Data) else self.to_graphs(x)
        batch = graph.batch if graph.batch is not None else graph.x.new_zeros(graph.num_nodes, dtype=torch.long)
        size = graph.num_graphs if isinstance(graph, pyg().data.Batch) else 1
        return self.forward_head(pyg().nn.global_mean_pool(self.forward_nodes(graph), batch, size=size))


# --- variants: Dwivedi et al.'s 100k-parameter configurations for CIFAR-10 superpixels ---------------
card = family_card(
    family="superpixel_gnn",
    input_convs=("embed",),  # no convolution sees the image: the node embedding sees the superpixels' features
    heads=("head.fc",),
    input_size=(3, 32, 32),
    min_input_size=(3, 25, 25),  # 150 superpixels of at least 4 pixels each
    dataset="CIFAR-10 superpixels",
    num_classes=10,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    task="graph",
)
_SETTING = ("4 layers with batch norm, ReLU and residual connections, mean readout and a 3-layer MLP, as in Dwivedi et al. "
            "2020 (arXiv:2003.00982), whose CIFAR-10 superpixel test accuracy is {acc} at about 100k parameters. "
            "Inputs: images in [0, 1] (mean 0, std 1), turned into SLIC superpixel graphs inside the model "
            "(n_segments=150, compactness=10, region adjacency; knn=8 for the paper's k-NN graphs).")
_COMMON = ("superpixel_graph", "message_passing", "batch_norm", "relu", "residual_shortcut")

register_model(card("gcn_superpixel", year=2016, arch="gcn_superpixel",
                    paper="Kipf & Welling, Semi-Supervised Classification with Graph Convolutional Networks, "
                          "arXiv:1609.02907 (setting: Dwivedi et al., Benchmarking Graph Neural Networks, arXiv:2003.00982)",
                    tricks=(*_COMMON, "graph_convolution"), kwargs={"conv": "gcn", "width": 146},
                    notes="GCN (PyG GCNConv, edge kernel as edge weight), width 146; " + _SETTING.format(acc="55.7%")),
               SuperpixelGNN)
register_model(card("gat_superpixel", year=2017, arch="gat_superpixel",
                    paper="Velickovic et al., Graph Attention Networks, arXiv:1710.10903 "
                          "(setting: Dwivedi et al., Benchmarking Graph Neural Networks, arXiv:2003.00982)",
                    tricks=(*_COMMON, "graph_attention"), kwargs={"conv": "gat", "width": 152, "heads": 8},
                    notes="GAT (PyG GATConv, edge kernel as edge feature), 8 heads of 19; " + _SETTING.format(acc="64.2%")),
               SuperpixelGNN)
register_model(card("gatedgcn_superpixel", year=2017, arch="gatedgcn_superpixel",
                    paper="Bresson & Laurent, Residual Gated Graph ConvNets, arXiv:1711.07553 "
                          "(setting: Dwivedi et al., Benchmarking Graph Neural Networks, arXiv:2003.00982)",
                    tricks=(*_COMMON, "edge_gating"), kwargs={"conv": "gatedgcn", "width": 78},
                    notes="Residual gated GCN (PyG ResGatedGraphConv, edge kernel in the gates), width 78; "
                          + _SETTING.format(acc="67.3%")),
               SuperpixelGNN)

