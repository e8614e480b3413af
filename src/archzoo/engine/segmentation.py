"""Semantic segmentation as an engine task: a class for every pixel.

The model maps images ``[B, C, s, s]`` to logits ``[B, K, h, w]`` (any ``h, w``: a stride-8
output is upsampled to the mask, as FCN and DeepLab do); targets are ``{"mask": int64 [B, s, s]}``
(:data:`~archzoo.data.IGNORE_INDEX` where a pixel is not scored). In-memory sets train on the
device fast path: :class:`~archzoo.data.gpu.BatchAugment` crops and flips the masks with the images.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.dataset import IGNORE_INDEX
from .metrics import SegmentationMeter, resize_logits
from .task import Task

TILE_OVERLAP = 0.25  # predict's sliding window: the share of a tile its neighbour overlaps
TILE_BATCH = 4  # tiles per forward pass


class SegmentationTask(Task):
    """Pixel-wise cross-entropy (Long et al. 2015, arXiv:1411.4038), pixels at ``ignore_index``
    left out, or the sum of terms ``loss`` names (``ce+dice``, ``wce``, ``unet``, ``focal``: see
    :mod:`archzoo.segmentation.losses`; ``class_weights`` ``[K]`` for ``wce`` and ``unet``); scored
    by mean IoU over the classes from the pixel confusion matrix. The validation loss is always
    plain cross-entropy (comparable between runs).

    A model returning :class:`~archzoo.models.base.AuxLogits` in training mode (an auxiliary
    head on an earlier stage, as PSPNet and DeepLab train) is trained on ``loss(logits) +
    aux_weight * sum(loss(aux))``.
    """

    name = "segmentation"
    monitor, monitor_mode = "miou", "max"
    train_fields = ("loss", "pixel_accuracy")
    val_fields = ("loss", "miou", "pixel_accuracy")
    device_keys = ("mask",)

    def __init__(self, num_classes: int, class_names: list[str] | None = None, ignore_index: int = IGNORE_INDEX,
                 label_smoothing: float = 0.0, aux_weight: float = 0.3, loss: str = "ce",
                 class_weights: torch.Tensor | None = None):
        from ..segmentation.losses import SegmentationLoss

        super().__init__(num_classes, class_names)
        self.ignore_index, self.label_smoothing, self.aux_weight = ignore_index, label_smoothing, aux_weight
        self.criterion = SegmentationLoss(loss, num_classes, ignore_index=ignore_index, class_weights=class_weights,
                                          label_smoothing=label_smoothing)

    # --- batches --------------------------------------------------------------------------------
    def device_batch(self, augment, images, targets):
        x, mask = augment(images, targets["mask"])
        return x, {"mask": mask.long()}

    def sample_transform(self, train, cfg, input_size, mean, std, in_chans):
        from ..data.transforms import DenseTransform

        return DenseTransform(train, input_size, mean, std, in_chans=in_chans, pad=cfg.pad, flip=cfg.flip,
                              crop=cfg.crop_size if train else None,
                              recipe=cfg.augment if train else "basic")

    @staticmethod
    def collate(samples):
        return torch.stack([x for x, _ in samples]), {"mask": torch.stack([t["mask"] for _, t in samples])}

    # --- a step ---------------------------------------------------------------------------------
    def loss(self, output, targets):
        mask = targets["mask"]
        weights = self.criterion.pixel_weights(mask)  # U-Net's border weights, once per batch
        loss = self.criterion(resize_logits(getattr(output, "logits", output), mask), mask, weights)
        for aux in getattr(output, "aux", ()):
            loss = loss + self.aux_weight * self.criterion(resize_logits(aux, mask), mask, weights)
        return loss

    def meter(self, device, train):
        return SegmentationMeter(self.num_classes, device, self.ignore_index, self.class_names)

    # --- the end of a run, eval and predict ----------------------------------------------------
    def report(self, run_dir, model, metrics, data, preprocess):
        from . import report

        files = []
        if metrics.get("confusion"):
            files.append(report.plot_confusion(metrics["confusion"], self.class_names, Path(run_dir) / "confusion.png",
                                               unit="pixels"))
        if data is not None and len(data):
            images, targets = report.first_items(data, 8, preprocess.size)
            masks = torch.stack([t["mask"] for t in targets])
            files.append(report.segmentation_grid(model, images, masks, preprocess, self.class_names,
                                                  Path(run_dir) / "predictions.png", ignore_index=self.ignore_index))
        return files

    # the numbers eval prints, in order; dice and pixel_error where the meter measures them
    EVAL_KEYS = ("miou", "pixel_accuracy", "dice", "pixel_error", "loss", "count", "per_class_iou", "per_class_dice")

    def eval_result(self, metrics):
        out = {k: metrics[k] for k in self.EVAL_KEYS if k in metrics}
        if self.num_classes <= 100:
            out["confusion"] = metrics["confusion"]
        return out

    def eval_tables(self, metrics):
        titles = {"miou": "mean IoU", "pixel_accuracy": "pixel accuracy", "dice": "mean Dice",
                  "pixel_error": "pixel error"}
        rows = [[title, f"{metrics[k]:.2%}"] for k, title in titles.items() if k in metrics]
        rows += [["loss", f"{metrics['loss']:.4f}"], ["images", metrics["count"]]]
        tables = [(None, ["metric", "value"], rows)]
        iou, dice = metrics["per_class_iou"], metrics.get("per_class_dice")
        if len(iou) <= 30 and dice:
            rows = [[k, f"{v:.1%}", f"{dice[k]:.1%}"] for k, v in iou.items()]
            tables.append(("per class", ["class", "IoU", "Dice"], rows))
        elif len(iou) <= 30:
            tables.append(("per class", ["class", "IoU"], [[k, f"{v:.1%}"] for k, v in iou.items()]))
        return tables

    @torch.no_grad()
    def predict(self, model, x, image_size, topk, *, image=None, mean=None, std=None, tile=None, crf=False):
        """The classes covering the most of the image (``top``: ``class``, ``index``, ``share`` =
        their fraction of its pixels) and ``mask``, the class of every pixel (uint8 ``[H, W]`` at
        the image's size, for the caller to save; not JSON).

        By default the logits of ``x`` (the image resized to the model's input) are resized to the
        image's size. With ``image`` (the original uint8 ``[C, H, W]``) and its ``mean``/``std``,
        an image larger than ``tile`` (when given: a model trained on crops at the images' own
        scale) is segmented at its own resolution by a sliding window of ``tile``-sized windows
        (:func:`archzoo.segmentation.tiling.sliding_window`), so memory stays bounded by the tile.
        ``crf``: refine the softmax with a dense CRF over the image's colours
        (:func:`archzoo.segmentation.crf.dense_crf`, DeepLab's settings; needs ``image``)."""
        h, w = image_size
        if image is not None and tile is not None and (h > tile or w > tile):
            from ..segmentation.tiling import sliding_window

            m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            sd = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
            full = (image[None].to(x.device).float() / 255 - m) / sd
            logits = sliding_window(model, full, tile, TILE_OVERLAP, self.num_classes, TILE_BATCH).float()
        else:
            logits = F.interpolate(model(x).float(), size=(h, w), mode="bilinear", align_corners=False)
        if crf:  # the mean-field marginals of the dense CRF over the softmax, at the image's size
            from ..segmentation.crf import dense_crf

            logits = dense_crf(logits.softmax(1)[0], image.to(logits.device).float())[None]
        mask = logits.argmax(1)[0].to(torch.uint8 if self.num_classes <= 256 else torch.int32).cpu()
        share = torch.bincount(mask.flatten().long(), minlength=self.num_classes).double() / mask.numel()
        q, idx = share.topk(min(topk, self.num_classes))
        top = [{"class": self.class_names[i], "index": i, "share": float(v)} for v, i in zip(q.tolist(), idx.tolist()) if v > 0]
        return {"top": top, "mask": mask}
