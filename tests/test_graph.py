"""Graph networks on images (archzoo.graph): SLIC superpixel graphs, GCN / GAT / gated GCN from
PyTorch Geometric, and training, eval and predict through the command line."""

from __future__ import annotations

import json

import pytest
import torch

import archzoo
from archzoo.cli.main import main
from archzoo.data.digits import load_digits_dataset
from archzoo.graph import SuperpixelGraphs, clear_cache, draw_graph
from archzoo.graph.pyg import pyg
from archzoo.graph.superpixels import _CACHE
from archzoo.validate import UserError

GRAPH_MODELS = ["gat_superpixel", "gatedgcn_superpixel", "gcn_superpixel"]



def _two_colours(h: int = 32, w: int = 32) -> torch.Tensor:
    """Left half red, right half blue (uint8 [3, H, W])."""
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    image[0, :, : w // 2] = 255
    image[2, :, w // 2:] = 255
    return image


def _edges(data) -> set[tuple[int, int]]:
    return set(map(tuple, data.edge_index.t().tolist()))


def test_graph_nodes_are_superpixels_with_colour_position_and_size():
    spec = SuperpixelGraphs(n_segments=60)
    data = spec.graph(_two_colours())
    n = data.num_nodes
    assert 30 <= n <= 90  # about the requested count
    assert data.x.shape == (n, 3 + 3) and data.pos.shape == (n, 2)
    colour, pos, size = data.x[:, :3], data.x[:, 3:5], data.x[:, 5]
    # SLIC keeps to the colour edge: every superpixel is pure red or pure blue
    red = (colour - torch.tensor([1.0, 0.0, 0.0])).abs().max(1).values < 1e-6
    blue = (colour - torch.tensor([0.0, 0.0, 1.0])).abs().max(1).values < 1e-6
    assert bool((red | blue).all()) and red.any() and blue.any()
    assert bool((pos[red, 1] < 0.5).all()) and bool((pos[blue, 1] > 0.5).all())  # red ones on the left
    assert torch.equal(pos, data.pos) and bool(((pos >= 0) & (pos <= 1)).all())
    assert size.mean().item() == pytest.approx(1.0, abs=1e-5)


def test_edges_join_touching_superpixels_both_ways_or_k_nearest():
    image = load_digits_dataset("test").images[0]
    data = SuperpixelGraphs(n_segments=50).graph(image)
    edges = _edges(data)
    assert edges and all((j, i) in edges for i, j in edges)  # undirected: both directions
    assert all(i != j for i, j in edges)
    assert data.edge_attr.shape == (len(edges), 1)
    assert bool(((data.edge_attr > 0) & (data.edge_attr <= 1)).all())  # the Gaussian kernel
    # region adjacency: a superpixel's neighbours are the labels next to its pixels
    labels = SuperpixelGraphs(n_segments=50).segments(image)
    lab = torch.from_numpy(labels)
    right = set(zip(lab[:, :-1].flatten().tolist(), lab[:, 1:].flatten().tolist()))
    down = set(zip(lab[:-1].flatten().tolist(), lab[1:].flatten().tolist()))
    touching = {(a, b) for a, b in right | down if a != b}
    assert edges == touching | {(b, a) for a, b in touching}
    knn = SuperpixelGraphs(n_segments=50, knn=4).graph(image)
    degree = torch.bincount(knn.edge_index[0], minlength=knn.num_nodes)
    assert int(degree.min()) >= 4 and all((j, i) in _edges(knn) for i, j in _edges(knn))


def test_graphs_are_deterministic_cached_and_the_same_for_uint8_and_float():
    image = load_digits_dataset("test").images[3]
    spec = SuperpixelGraphs(n_segments=40)
    clear_cache()
    first = spec.graph(image)
    assert len(_CACHE) == 1 and spec.graph(image) is first  # the cache answers the second time
    clear_cache()
    again = spec.graph(image.float() / 255)  # the model's input: the same pixels in [0, 1]
    for key in ("x", "pos", "edge_index", "edge_attr"):
        assert torch.equal(first[key], again[key]), key
    assert spec.graph(image.flip(-1)) is not again  # another image, another graph
    batch = spec.batch(torch.stack([image, image.flip(-1)]).float() / 255)
    assert isinstance(batch, pyg().data.Batch) and batch.num_graphs == 2 and batch.x.shape[0] == batch.batch.shape[0]


def test_bad_inputs_are_user_errors_that_say_what_to_change():
    with pytest.raises(UserError, match=r"8x8 pixels are too few for n_segments=150.*--image-size"):
        SuperpixelGraphs().graph(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(UserError, match="1 or 3 channels"):
        SuperpixelGraphs().graph(torch.zeros(2, 32, 32))
    with pytest.raises(UserError, match="NaN"):
        SuperpixelGraphs(n_segments=10).graph(torch.full((1, 32, 32), float("nan")))
    for kwargs, what in (({"n_segments": 1}, "n_segments"), ({"knn": -1}, "knn"), ({"compactness": 0}, "compactness")):
        with pytest.raises(UserError, match=what):
            SuperpixelGraphs(**kwargs)
    with pytest.raises(UserError, match="conv"):
        archzoo.create_model("gcn_superpixel", conv="sage")
    with pytest.raises(UserError, match="multiple of heads"):
        archzoo.create_model("gat_superpixel", width=30)
    model = archzoo.create_model("gcn_superpixel")
    with pytest.raises(UserError, match="3-channel images"):
        model(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_models_forward_backward_on_images_and_on_graphs(name):
    torch.manual_seed(0)
    model = archzoo.create_model(name, num_classes=7)
    card = archzoo.model_card(name)
    assert card.task == "graph" and {"superpixel_graph", "message_passing"} <= set(card.tricks)
    assert 80_000 <= sum(p.numel() for p in archzoo.create_model(name).parameters()) <= 120_000  # the paper's budget
    images = torch.rand(3, 3, 32, 32)
    out = model(images)
    assert out.shape == (3, 7) and bool(torch.isfinite(out).all())
    out.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(images), model(model.to_graphs(images)), atol=1e-6)
        single = model.graphs.graph(images[1])  # one graph, not a Batch
        assert torch.allclose(model(single), model(images)[1:2], atol=1e-5)


def test_draw_graph_overlays_the_superpixel_graph():
    image = _two_colours()
    picture = draw_graph(image, SuperpixelGraphs(n_segments=20), scale=4)
    assert picture.dtype == torch.uint8 and picture.shape == (3, 128, 128)
    plain = image.repeat_interleave(4, 1).repeat_interleave(4, 2)
    assert (picture != plain).any(0).float().mean() > 0.02  # borders, edges and nodes drawn


def test_train_on_digits_learns_then_eval_and_predict(tmp_path, capsys, one_thread):
    run = tmp_path / "run"
    args = ["train", "gcn_superpixel", "--data", "digits", "--val-data", "digits", "--train-limit", "500",
            "--epochs", "6", "--batch-size", "32", "--opt", "adamw", "--lr", "0.01", "--augment", "none",
            "--model-kwargs", "n_segments=40", "width=64", "--out", str(run), "--quiet"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == "graph" and summary["val_count"] == 359
    assert summary["val_accuracy"] > 0.3, summary["val_accuracy"]  # chance is 0.1
    assert {"best.safetensors", "state.safetensors", "graphs.png", "confusion.png"} <= set(summary["files"])
    capsys.readouterr()

    assert main(["eval", str(run / "last.safetensors"), "--data", "digits", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 359 and result["accuracy"] == pytest.approx(summary["val_accuracy"], abs=1e-6)

    image = tmp_path / "digit.png"
    from archzoo.engine.report import save_picture

    save_picture(load_digits_dataset("test").images[0], image)
    assert main(["predict", str(run / "last.safetensors"), str(image), "--topk", "3", "--out", str(tmp_path / "drawn"),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)["predictions"][0]
    probs = [t["probability"] for t in pred["top"]]
    assert len(probs) == 3 and probs == sorted(probs, reverse=True)
    assert (tmp_path / "drawn" / "digit.graph.png").is_file() and pred["graph"].endswith("digit.graph.png")

    # resume: one more epoch from the saved state
    assert main(["train", "--resume", str(run), "--epochs", "7", "--quiet"]) == 0
    assert json.loads((run / "summary.json").read_text())["epochs"] == 7


def test_graph_runs_refuse_options_that_make_no_sense_for_graphs():
    with pytest.raises(UserError, match="mixup"):
        archzoo.train("gcn_superpixel", "digits", epochs=1, mixup=0.2, train_limit=20, log="quiet")
    with pytest.raises(UserError, match="--out is for detectors, segmenters and graph models"):
        from archzoo.cli.predict import predict_files

        model = archzoo.create_model("lenet5")
        predict_files(model, {"model": "lenet5"}, [__file__], out="x")


def test_pyg_leaves_torch_as_it_was_so_torchscript_still_compiles():
    """PyTorch Geometric replaces torch.index_select/select on import (for its HashTensor), and
    TorchScript cannot compile the replacements; archzoo imports it without that side effect."""
    original = torch.index_select
    archzoo.create_model("gcn_superpixel")(torch.rand(1, 3, 32, 32))  # loads PyG
    assert "torch_geometric" in __import__("sys").modules
    assert torch.index_select is original

    def gather(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.index_select(x, 0, i) + torch.select(x, 0, 0)

    scripted = torch.jit.script(gather)
    x = torch.arange(6.0).view(3, 2)
    assert torch.equal(scripted(x, torch.tensor([2, 0])), torch.tensor([[4.0, 6.0], [0.0, 2.0]]))
