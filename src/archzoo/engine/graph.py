"""Graph classification of images as an engine task: :class:`GraphTask`.

A graph model (``task="graph"`` on its card: :mod:`archzoo.graph`) classifies an image from its
superpixel graph. It is trained and scored on ordinary classification data (labels, as a
classifier's): the model turns each batch of images into a PyTorch Geometric ``Batch`` of
superpixel graphs itself (cached per image, so the graphs are built once per run), and the loss,
metrics, checkpoints and resumption are the classifier's. What differs from
:class:`~archzoo.engine.task.ClassificationTask`:

* augmentation: horizontal flips only (``--augment basic``, the default) or none; a mirrored
  image is a new graph (cached as well), a random crop would be a new graph every epoch, and the
  paper trains on fixed graphs;
* no mixup, cutmix, erasing or distillation (a mixed image's superpixels belong to neither image);
* the run's pictures add ``graphs.png`` (validation images with their superpixel graphs and the
  predicted class), and ``archzoo predict --out DIR`` draws each image's graph to ``DIR/<name>.graph.png``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .task import ClassificationTask


class GraphTask(ClassificationTask):
    """Cross-entropy on superpixel-graph classifiers; see the module doc."""

    name = "graph"
    data_task = "classification"  # the data such a model trains and is scored on

    def __init__(self, num_classes: int, class_names: list[str] | None = None, label_smoothing: float = 0.0):
        super().__init__(num_classes, class_names, label_smoothing=label_smoothing)

    # --- batches --------------------------------------------------------------------------------
    def batch_augment(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.gpu import BatchAugment

        return BatchAugment(input_size, mean, std, pad=0, flip=cfg.flip, train=train and cfg.augment == "basic",
                            in_chans=in_chans, scale=None)

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data import build_transform
        from .task import _ImageOnly

        return _ImageOnly(build_transform(train, input_size, mean, std, augment=cfg.augment if train else "none",
                                          in_chans=in_chans, pad=0, flip=cfg.flip, small=True))

    def input_transform(self, input_size, mean, std, in_chans):
        from ..data import build_transform

        return build_transform(False, input_size, mean, std, in_chans=in_chans, small=True)

    # --- the end of a run, predict --------------------------------------------------------------
    def report(self, run_dir, model, metrics, data, preprocess) -> list[Path]:
        from . import report

        files = super().report(run_dir, model, metrics, data, preprocess)
        if data is not None and len(data):
            images, targets = report.first_items(data, 8, preprocess.size)
            labels = torch.stack([t["label"] for t in targets])
            files.append(graph_grid(model, images, labels, preprocess, self.class_names, Path(run_dir) / "graphs.png"))
        return files

    @torch.no_grad()
    def draw(self, model, x: torch.Tensor) -> torch.Tensor:
        """The superpixel graph the model builds from its input ``x`` ``[1, C, s, s]``, drawn over
        the image (uint8 ``[3, H, W]``)."""
        from ..graph import draw_graph

        return draw_graph(x[0].detach().float().cpu().clamp(0, 1), model.graphs)


@torch.no_grad()
def graph_grid(model, images: torch.Tensor, labels: torch.Tensor, transform, class_names, path, cols: int = 4) -> Path:
    """uint8 ``images`` drawn with their superpixel graphs, titled "predicted (probability)", red where wrong."""
    from ..graph import draw_graph
    from .report import _image_axes, predict_batch, save_figure

    probs = predict_batch(model, images, transform)
    conf, pred = probs.max(-1)
    device = next(model.parameters()).device
    x = transform(images.to(device)).float().cpu().clamp(0, 1)
    pictures = torch.stack([draw_graph(im, model.graphs, scale=8) for im in x])
    fig, axes = _image_axes(pictures, cols, (2.2, 2.4))
    for i, ax in enumerate(axes):
        ok = int(pred[i]) == int(labels[i])
        n = model.graphs.graph(x[i]).num_nodes
        ax.set_title(f"{class_names[int(pred[i])]} ({conf[i]:.0%}), {n} nodes", fontsize=8,
                     color="black" if ok else "red")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)
