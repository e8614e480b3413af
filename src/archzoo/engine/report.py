"""Pictures of a run: learning curves, the confusion matrix, grids of predictions (classes,
masks, boxes), and the report folder of ``archzoo demo``.

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


TITLES = {"accuracy": "top-1 accuracy", "miou": "mean IoU", "pixel_accuracy": "pixel accuracy", "map50": "mAP@0.5"}


def plot_curves(history: list[dict], path: str | Path, metric: str = "accuracy") -> Path:
    """The loss and ``metric`` per epoch, training and validation (where measured), side by side."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(10, 4)
    epochs = [h["epoch"] for h in history]
    panels = ((fig.add_subplot(1, 2, 1), "loss", "loss"), (fig.add_subplot(1, 2, 2), metric, TITLES.get(metric, metric)))
    for ax, key, title in panels:
        for split, style in (("train", "-o"), ("val", "-s")):
            pts = [(e, h[f"{split}_{key}"]) for e, h in zip(epochs, history) if h.get(f"{split}_{key}") is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=split, markersize=3)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return save_figure(fig, path)


def plot_confusion(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path,
                   unit: str = "images") -> Path:
    """Row-normalised confusion matrix (true class per row), with the counts written in cells
    when there are few enough classes to read them. ``unit``: what is counted (``"pixels"`` for
    segmentation)."""
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
    if k <= 20 and unit == "images":
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    acc = float(cm.diag().sum() / cm.sum().clamp(min=1))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({int(cm.sum())} {unit}, accuracy {acc:.1%})")
    return save_figure(fig, path)


def _to_display(image: torch.Tensor):
    img = image.detach().cpu()
    if img.shape[0] == 1:
        return img[0].numpy(), "gray"
    return img.permute(1, 2, 0).numpy(), None


@torch.no_grad()
def _image_axes(images: torch.Tensor, cols: int, cell: tuple[float, float]):
    """A figure with ``images`` shown in a grid of ``cols`` columns (``cell``: inches per image),
    and one axes per image to draw on."""
    n = len(images)
    rows = -(-n // cols)
    fig = new_figure(cell[0] * cols, cell[1] * rows)
    axes = []
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        img, cmap = _to_display(images[i])
        ax.imshow(img, cmap=cmap, vmin=0, vmax=255)
        axes.append(ax)
    return fig, axes


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
    fig, axes = _image_axes(images, cols, (1.4, 1.6))
    for i, ax in enumerate(axes):
        ok = int(pred[i]) == int(labels[i])
        ax.set_title(f"{class_names[int(pred[i])]} ({conf[i]:.0%})", fontsize=8, color="black" if ok else "red")
        if not ok:
            ax.set_xlabel(f"true: {class_names[int(labels[i])]}", fontsize=7, color="red")
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def first_items(ds, n: int, size: int) -> tuple[torch.Tensor, list[dict]]:
    """The first ``n`` items of ``ds``: uint8 images ``[n, C, H, W]`` and their targets (lazy
    data, whose images may differ in size, resized to ``size x size``, boxes and masks with them)."""
    n = min(n, len(ds))
    if ds.images is not None:
        return ds.images[:n], [ds.target(i) for i in range(n)]
    from ..data.transforms import resize_sample

    items = [resize_sample(*ds[i], size) for i in range(n)]
    return torch.stack([im for im, _ in items]), [t for _, t in items]


def _palette(k: int) -> torch.Tensor:
    """``k`` distinct colours (float RGB in 0..1), class 0 (background) transparent black."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return torch.tensor([[0.0, 0.0, 0.0]] + [list(cmap(i % 20)[:3]) for i in range(k - 1)])


def _overlay(image: torch.Tensor, mask: torch.Tensor | None, palette: torch.Tensor, ignore_index: int):
    """An RGB picture: the image, or (with a ``mask``) the image in dimmed grey with every class
    but 0 painted in its colour and ignored pixels white."""
    img = image.float().div(255).expand(3, -1, -1).permute(1, 2, 0)
    if mask is None:
        return img.numpy()
    grey = 0.25 + 0.5 * img.mean(-1, keepdim=True).expand(-1, -1, 3)
    m = mask.long()
    on = ((m > 0) & (m != ignore_index))[..., None]
    out = torch.where(on, 0.15 * grey + 0.85 * palette[m.clamp(max=len(palette) - 1)], grey)
    return torch.where((m == ignore_index)[..., None], torch.ones(3), out).numpy()


@torch.no_grad()
def segmentation_grid(model: nn.Module, images: torch.Tensor, masks: torch.Tensor, transform,
                      class_names: Sequence[str], path: str | Path, ignore_index: int = 255) -> Path:
    """Rows of (image, true mask, predicted mask) with every class in its colour and a legend;
    the prediction is resized to the mask."""
    from matplotlib.patches import Patch

    from .metrics import resize_logits

    model.eval()
    device = next(model.parameters()).device
    pred = resize_logits(model(transform(images.to(device))).float(), masks).argmax(1).cpu()
    n, palette = len(images), _palette(len(class_names))
    fig = new_figure(6, 2 * n + 0.6)
    for i in range(n):
        for j, (title, mask) in enumerate((("image", None), ("truth", masks[i]), ("prediction", pred[i]))):
            ax = fig.add_subplot(n, 3, 3 * i + j + 1)
            ax.imshow(_overlay(images[i], mask, palette, ignore_index))
            if i == 0:
                ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(color=palette[c].tolist(), label=name) for c, name in enumerate(class_names) if c > 0]
    fig.axes[-2].legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=min(len(handles), 4),
                        fontsize=7, frameon=False)  # under the last row's middle picture
    return save_figure(fig, path)


def mask_overlay(image: torch.Tensor, mask: torch.Tensor, num_classes: int, alpha: float = 0.5) -> torch.Tensor:
    """``image`` (uint8 ``[C, H, W]``) with every pixel of a class but 0 (the background) blended
    with its class colour (:func:`_palette`): ``(1 - alpha) * image + alpha * colour``; uint8 ``[3, H, W]``."""
    img = image.expand(3, -1, -1).float() if image.shape[0] == 1 else image.float()
    m = mask.long()
    colours = (_palette(max(num_classes, 2)) * 255)[m.clamp(0, num_classes - 1)].permute(2, 0, 1)
    out = torch.where((m > 0)[None], (1 - alpha) * img + alpha * colours, img)
    return out.round().clamp(0, 255).to(torch.uint8)


def save_mask(mask: torch.Tensor, path: str | Path, num_classes: int) -> Path:
    """A PNG of class indices (``mask`` ``[H, W]``): mode ``P`` (8-bit indices with the class
    colours as its palette, as Pascal VOC's masks) for up to 256 classes, else 16-bit grey."""
    import numpy as np
    from PIL import Image

    from ..checkpoint import atomic_write

    if num_classes <= 256:
        h, w = mask.shape
        picture = Image.frombytes("P", (w, h), mask.to(torch.uint8).contiguous().numpy().tobytes())
        colours = (_palette(max(num_classes, 2)) * 255).round().to(torch.uint8)[:num_classes].flatten().tolist()
        picture.putpalette(colours + [0] * (768 - len(colours)))
    else:
        picture = Image.fromarray(mask.numpy().astype(np.uint16))
    path = Path(path)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    return path


def save_picture(image: torch.Tensor, path: str | Path) -> Path:
    """uint8 ``[C, H, W]`` (1 or 3 channels) as a PNG, written atomically."""
    from PIL import Image

    from ..checkpoint import atomic_write

    array = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).contiguous().numpy()
    picture = Image.fromarray(array)
    path = Path(path)
    atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))
    return path


@torch.no_grad()
def detection_grid(model: nn.Module, images: torch.Tensor, targets: list[dict], transform,
                   class_names: Sequence[str], path: str | Path, threshold: float = 0.5, cols: int = 4) -> Path:
    """Images with their true boxes (dashed white) and the detections scoring ``threshold`` or
    more (coloured, with class and score), in the images' pixels."""
    from matplotlib.patches import Rectangle

    model.eval()
    device = next(model.parameters()).device
    x = transform(images.to(device))
    detections = model(x)
    scale = torch.tensor([images.shape[-1] / x.shape[-1], images.shape[-2] / x.shape[-2]] * 2)
    palette = _palette(len(class_names) + 1)
    fig, axes = _image_axes(images, cols, (2.4, 2.4))
    for i, ax in enumerate(axes):
        for x1, y1, x2, y2 in targets[i]["boxes"].tolist():
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="white", ls="--", lw=1))
        det = {k: v.cpu() for k, v in detections[i].items()}
        for box, score, c in zip(det["boxes"] * scale, det["scores"], det["labels"]):
            if score < threshold:
                continue
            x1, y1, x2, y2 = box.tolist()
            colour = palette[int(c) + 1].tolist()
            ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec=colour, lw=1.5))
            ax.text(x1, y1, f"{class_names[int(c)]} {float(score):.0%}", fontsize=6, color="white",
                    bbox=dict(facecolor=colour, alpha=0.8, pad=1, lw=0))
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
