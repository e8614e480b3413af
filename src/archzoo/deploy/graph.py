"""What an exported file computes: each task's model wrapped as a graph of tensors in, tensors out.

The input is always the tensor the PyTorch model takes in ``archzoo eval``/``predict``: ``image``,
float32 ``[N, C, H, W]``, the picture resized to the model's input size, scaled to 0..1 and
normalised with the checkpoint's ``mean``/``std`` (a detector's are 0 and 1: it normalises inside,
and so does its graph). Preprocessing stays outside the graph and is written into the file's
metadata (:func:`archzoo.deploy.export.deploy_metadata`).

* classifiers: ``image -> logits [N, K]`` (the eval-mode forward; auxiliary heads are training-only);
* segmenters: ``image -> logits [N, K, H, W]``, at the input's size;
* detectors: batch 1, ``image [1, 3, H, W] -> boxes [n, 4]`` (xyxy, in the input's pixels),
  ``scores [n]``, ``labels [n]`` (int64 indices into the class names): the detector's own
  decoding and NMS are inside the graph (torchvision's ``nms`` and ``roi_align`` have ONNX
  operators). Mask R-CNN adds ``masks [n, 1, 28, 28]``, the probabilities over each box (paste
  them into the image as :func:`archzoo.detection.roi_heads.paste_masks` does). R-CNN and Fast
  R-CNN take their proposals from selective search (OpenCV, not a network), so their graph has a
  second input, ``proposals [m, 4]`` (xyxy boxes in the input's pixels), which the caller computes
  (:func:`archzoo.detection.selective_search.selective_search`).

The detector graph skips the detector's resize (the input already has the model's size) and pads
to its stride as the detector's transform does, so on an input of the transform's size it returns
exactly ``model([image])`` (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GraphSpec:
    """A model ready to trace: ``module`` maps ``inputs`` to ``outputs`` (names as in the file);
    ``batch``: whether the batch dimension may vary (detectors: 1 image per call); ``task``."""

    module: nn.Module
    task: str
    inputs: list[str]
    outputs: list[str]
    batch: bool = True
    notes: list[str] = field(default_factory=list)

    def sample(self, size: tuple[int, int, int], batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Inputs for tracing and checking: random pictures of ``size`` ``(C, H, W)``; a
        normalised-looking ``randn`` for classifiers and segmenters, 0..1 pictures for detectors
        (with a few random proposals where the graph takes them; their number varies with ``seed``)."""
        g = torch.Generator().manual_seed(seed)
        c, h, w = size
        if self.task != "detection":
            return (torch.randn(batch, c, h, w, generator=g),)
        # smooth random pictures (noise upsampled): more like photos than white noise
        x = F.interpolate(torch.rand(1, c, max(h // 8, 2), max(w // 8, 2), generator=g), size=(h, w),
                          mode="bilinear", align_corners=False).clamp(0, 1)
        if "proposals" not in self.inputs:
            return (x,)
        m = 5 + seed % 7
        xy = torch.rand(m, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = (torch.rand(m, 2, generator=g) * 0.4 + 0.1) * torch.tensor([w, h])
        return x, torch.cat([xy, xy + wh], 1)

    def dynamic_axes(self, spatial: bool) -> dict[str, dict[int, str]]:
        """``torch.onnx.export``'s ``dynamic_axes``: batch (where it may vary), height and width
        (``spatial``), and the detections' count."""
        axes: dict[str, dict[int, str]] = {}
        image = ({0: "batch"} if self.batch else {}) | ({2: "height", 3: "width"} if spatial else {})
        if image:
            axes["image"] = image
        if "proposals" in self.inputs:
            axes["proposals"] = {0: "proposals"}
        if self.task == "detection":
            axes.update({name: {0: "detections"} for name in self.outputs})
        elif self.task == "super_resolution":  # the output is scale times the input's size
            axes.update({name: {0: "batch"} | ({2: "out_height", 3: "out_width"} if spatial else {})
                         for name in self.outputs})
        elif self.batch:
            axes.update({name: {0: "batch"} | ({2: "height", 3: "width"} if spatial and self.task in ("segmentation", "style_transfer")
                                               else {}) for name in self.outputs})
        return axes


class ClassifierGraph(nn.Module):
    """``image -> logits``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.model(image)
        return getattr(out, "logits", out)  # an AuxLogits only in training; eval gives the tensor


class DetectorGraph(nn.Module):
    """One picture in 0..1 ``[1, 3, H, W]`` (and proposals, for selective-search detectors) ->
    ``boxes, scores, labels`` (``masks`` too for Mask R-CNN), the detector's own decoding."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, image: torch.Tensor, proposals: torch.Tensor | None = None):
        from ..detection.transform import ImageBatch
        from ..detection.two_stage import TwoStageDetector

        det = self.detector
        t = det.transform
        x = t.normalize(image[0])[None]
        h, w = x.shape[-2:]
        s = t.size_divisible
        x = F.pad(x, (0, (s - w % s) % s, 0, (s - h % s) % s))  # the transform's zero padding to the stride
        batch = ImageBatch(x, [(h, w)])
        if isinstance(det, TwoStageDetector):
            maps = det.features(x)
            if proposals is None:
                found, _, *rest = det.proposer(batch, maps, None)
            else:
                found, rest = [proposals.to(x.dtype)], []
            d = det.roi_heads(rest[0] if rest else maps, found, batch.image_sizes, None)[0][0]
        else:
            d = det.detect(det.forward_batch(x), batch)[0]
        out = (d["boxes"], d["scores"], d["labels"])
        return out + (d["masks"],) if "masks" in d else out


def export_graph(model: nn.Module) -> GraphSpec:
    """The :class:`GraphSpec` of an archzoo model (in eval mode), by its card's task."""
    from ..validate import UserError

    card = getattr(model, "card", None)
    task = card.task if card is not None else "classification"
    if getattr(model, "out_indices", None) is not None or getattr(model, "num_classes", 1) == 0:
        raise UserError(f"{getattr(card, 'name', 'the model')} has no prediction head (a features_only extractor "
                        "or num_classes 0); export a model with its head")
    model = model.eval()
    if task == "classification":
        return GraphSpec(ClassifierGraph(model).eval(), task, ["image"], ["logits"])
    if task == "segmentation":
        return GraphSpec(ClassifierGraph(model).eval(), task, ["image"], ["logits"])
    if task == "style_transfer":  # picture in 0..1 -> stylised picture in 0..1, same size
        return GraphSpec(ClassifierGraph(model).eval(), task, ["image"], ["stylized"])
    if task == "super_resolution":  # LR picture (Y or RGB) in 0..1 -> the scale-times larger picture
        return GraphSpec(ClassifierGraph(model).eval(), task, ["image"], ["upscaled"])
    if task == "detection":
        from ..detection.selective_search import SelectiveSearchProposer

        inputs, notes = ["image"], ["batch 1: one picture per call"]
        if isinstance(getattr(model, "proposer", None), SelectiveSearchProposer):
            inputs.append("proposals")
            notes.append("proposals [m, 4] (xyxy, input pixels) come from selective search outside the graph")
        outputs = ["boxes", "scores", "labels"]
        if getattr(getattr(model, "roi_heads", None), "has_mask", False):
            outputs.append("masks")
            notes.append("masks [n, 1, 28, 28]: probabilities over each box, to be pasted into the picture")
        return GraphSpec(DetectorGraph(model).eval(), task, inputs, outputs, batch=False, notes=notes)
    raise UserError(f"cannot export a {task} model")


# --- ONNX for torchvision's ps_roi_align (ThunderNet) ------------------------------------------------

_PS_ROI_ALIGN_REGISTERED = False


def register_onnx_ops(opset: int) -> None:
    """Teach the TorchScript-based ONNX exporter ``torchvision::ps_roi_align`` (ThunderNet's
    position-sensitive RoIAlign), which has no ONNX operator: a RoiAlign over all ``C * S * S``
    channels, then each output cell ``(i, j)`` keeps its own channel group ``i * S + j`` (a
    multiplication by the identity over the ``S * S`` cells and a sum). Same sampling as
    torchvision's kernel (``half_pixel``, i.e. coordinates shifted by half a pixel)."""
    global _PS_ROI_ALIGN_REGISTERED
    if _PS_ROI_ALIGN_REGISTERED:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx.symbolic_helper import parse_args

    @parse_args("v", "v", "f", "i", "i", "i")
    def ps_roi_align(g, input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio):
        if pooled_height != pooled_width:
            raise ValueError("ps_roi_align export: only square output sizes")
        s = pooled_height
        first = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64))  # a scalar index drops the axis
        batch = g.op("Cast", g.op("Gather", rois, first, axis_i=1), to_i=7)  # [n] image indices, int64
        boxes = g.op("Gather", rois, g.op("Constant", value_t=torch.tensor([1, 2, 3, 4], dtype=torch.int64)), axis_i=1)
        pooled = g.op("RoiAlign", input, boxes, batch, coordinate_transformation_mode_s="half_pixel",
                      spatial_scale_f=spatial_scale, output_height_i=s, output_width_i=s,
                      sampling_ratio_i=max(sampling_ratio, 0), mode_s="avg")
        cells = g.op("Reshape", pooled, g.op("Constant", value_t=torch.tensor([0, -1, s * s, s * s])))
        own = g.op("Mul", cells, g.op("Constant", value_t=torch.eye(s * s, dtype=torch.float32)))
        own = g.op("ReduceSum", own, g.op("Constant", value_t=torch.tensor([3])), keepdims_i=0)
        out = g.op("Reshape", own, g.op("Constant", value_t=torch.tensor([0, 0, s, s])))
        return out, g.op("Constant", value_t=torch.zeros(1, dtype=torch.int32))  # the unused channel map

    register_custom_op_symbolic("torchvision::ps_roi_align", ps_roi_align, 16)
    _PS_ROI_ALIGN_REGISTERED = True
