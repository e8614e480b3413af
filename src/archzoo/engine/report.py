"""Pictures of a run: learning curves, the confusion matrix, a grid of predictions, and the
report folder of ``archzoo demo``.

matplotlib is used through its object API on the Agg canvas (no pyplot, no global backend
switch), so drawing works on a machine without a display and leaves a notebook's backend alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..checkpoint import atomic_write_text
from ..explain.render import new_figure, save_figure


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch, training and validation, side by side."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(10, 4)
    epochs = [h["epoch"] for h in history]
    for ax, key, title in ((fig.add_subplot(1, 2, 1), "loss", "loss"), (fig.add_subplot(1, 2, 2), "accuracy", "top-1 accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            pts = [(e, h[f"{split}_{key}"]) for e, h in zip(epochs, history) if h.get(f"{split}_{key}") is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (true class per row), with the counts written in cells
    when there are few enough classes to read them."""
    cm = torch.as_tensor(confusion, dtype=torch.float64)
    k = cm.shape[0]
    norm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    side = min(max(4.0, 0.45 * k + 2), 16)
    fig = new_figure(side + 1, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    names = [str(c) for c in class_names]
    if k <= 40:
        ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 3 else 0, fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    acc = float(cm.diag().sum() / cm.sum().clamp(min=1))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(cm.sum())} images, accuracy {acc:.1%})")
    return save_figure(fig, path)


def _to_display(image: torch.Tensor):
    img = image.detach().cpu()
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


@torch.no_grad()
def predict_batch(model: nn.Module, images: torch.Tensor, transform) -> torch.Tensor:
    """Softmax probabilities of ``model`` for uint8 ``images`` ``[N, C, H, W]``; ``transform``
    maps a uint8 batch to model input (e.g. an eval-mode ``BatchAugment``)."""
    model.eval()
    device = next(model.parameters()).device
    x = transform(images.to(device)).to(device)
    return model(x).float().softmax(-1).cpu()


def prediction_grid(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, transform,
                    class_names: Sequence[str], path: str | Path, cols: int = 8) -> Path:
    """A grid of images titled "predicted (probability)", red where the prediction is wrong."""
    probs = predict_batch(model, images, transform)
    conf, pred = probs.max(-1)
    n = len(images)
    rows = -(-n // cols)
    fig = new_figure(1.4 * cols, 1.6 * rows)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        img, cmap = _to_display(images[i])
        ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
        ok = int(pred[i]) == int(labels[i])
        ax.set_title(f"{class_names[int(pred[i])]} ({conf[i]:.0%})", fontsize=8, color="black" if ok else "red")
        if not ok:
            ax.set_xlabel(f"true: {class_names[int(labels[i])]}", fontsize=7, color="red")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def cam_grid(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, transform,
             class_names: Sequence[str], path: str | Path) -> Path | None:
    """Class-activation maps of a few validation images (:func:`archzoo.explain.cam_grid`: original
    CAM where the head is global average pooling + linear, else Grad-CAM).

    Takes the trained model, uint8 images ``[N, C, H, W]`` with their labels, the eval transform
    and the class names; writes a PNG grid of the first 16 to ``path`` and returns it.
    """
    from ..explain import cam_grid as draw_cam_grid

    return draw_cam_grid(model, images, labels, transform, class_names, path, max_images=16)


def write_report(folder: str | Path, *, model: nn.Module, history: list[dict], metrics: dict,
                 class_names: Sequence[str], images: torch.Tensor, labels: torch.Tensor, transform,
                 title: str, facts: dict) -> Path:
    """A small report folder: ``curves.png``, ``confusion.png``, ``predictions.png``, a CAM grid
    when available, ``report.json`` (the facts and metrics) and a ``README.md`` tying them together."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pictures = {"Learning curves": plot_curves(history, folder / "curves.png")}
    if metrics.get("confusion"):
        pictures["Confusion matrix (validation)"] = plot_confusion(metrics["confusion"], class_names, folder / "confusion.png")
    pictures["Predictions on validation images"] = prediction_grid(model, images, labels, transform, class_names,
                                                                   folder / "predictions.png")
    cams = cam_grid(model, images, labels, transform, class_names, folder / "cam.png")
    if cams is not None:
        pictures["Where the model looks (class activation maps)"] = cams
    summary = {**facts, "metrics": {k: v for k, v in metrics.items() if k != "confusion"}}
    atomic_write_text(folder / "report.json", json.dumps(summary, indent=2) + "\n")
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines.append("")
    for caption, file in pictures.items():
        lines += [f"## {caption}", "", f"![{caption}]({Path(file).name})", ""]
    readme = folder / "README.md"
    atomic_write_text(readme, "\n".join(lines))
    return readme
