"""Box coders: how a head's regression outputs encode a box relative to an anchor or a point.

Box arithmetic itself (IoU, GIoU, NMS, format conversion) comes from ``torchvision.ops``.
"""

from __future__ import annotations

import math

import torch


class BoxCoder:
    """The R-CNN delta encoding (Girshick et al., "Rich feature hierarchies ...", 2014, appendix C),
    used by Faster R-CNN, SSD and RetinaNet: a box relative to an anchor is
    ``(wx*dx/w_a, wy*dy/h_a, ww*log(w/w_a), wh*log(h/h_a))``, where ``dx, dy`` is the shift of the
    centre; the weights rescale the targets to similar magnitudes (SSD's "variances" are their
    reciprocals: ``(10, 10, 5, 5)``). Decoding clamps the log-sizes at ``clip`` so that ``exp``
    cannot overflow."""

    def __init__(self, weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
                 clip: float = math.log(1000.0 / 16)):
        self.weights = tuple(float(w) for w in weights)
        self.clip = clip

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Targets ``[N, 4]`` for ``boxes`` ``[N, 4]`` (xyxy) matched to ``anchors`` ``[N, 4]``."""
        wx, wy, ww, wh = torch.as_tensor(self.weights, dtype=boxes.dtype, device=boxes.device)
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
        return torch.stack((wx * (bx - ax) / aw, wy * (by - ay) / ah,
                            ww * torch.log(bw / aw), wh * torch.log(bh / ah)), dim=1)

    def decode(self, codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Boxes ``[N, 4]`` (xyxy) from ``codes`` ``[N, 4]`` relative to ``anchors`` ``[N, 4]``."""
        anchors = anchors.to(codes.dtype)
        aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
        ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
        wx, wy, ww, wh = self.weights
        dx, dy = codes[:, 0] / wx, codes[:, 1] / wy
        dw = torch.clamp(codes[:, 2] / ww, max=self.clip)
        dh = torch.clamp(codes[:, 3] / wh, max=self.clip)
        cx, cy = dx * aw + ax, dy * ah + ay
        half_w = torch.tensor(0.5, dtype=codes.dtype, device=codes.device) * (torch.exp(dw) * aw)
        half_h = torch.tensor(0.5, dtype=codes.dtype, device=codes.device) * (torch.exp(dh) * ah)
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=1)


class DistanceBoxCoder:
    """The anchor-free encoding of FCOS (Tian et al., arXiv:1904.01355, 2019): a box as the distances
    ``(l, t, r, b)`` from a location (the centre of ``anchors``) to its four sides, divided by the
    anchor's size when ``normalize_by_size``."""

    def __init__(self, normalize_by_size: bool = True):
        self.normalize_by_size = normalize_by_size

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        cx, cy = 0.5 * (anchors[:, 0] + anchors[:, 2]), 0.5 * (anchors[:, 1] + anchors[:, 3])
        codes = torch.stack((cx - boxes[:, 0], cy - boxes[:, 1], boxes[:, 2] - cx, boxes[:, 3] - cy), dim=1)
        if self.normalize_by_size:
            size = torch.stack((anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]), dim=1).repeat(1, 2)
            codes = codes / size
        return codes

    def decode(self, codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        anchors = anchors.to(codes.dtype)
        if self.normalize_by_size:
            size = torch.stack((anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]), dim=1).repeat(1, 2)
            codes = codes * size
        cx, cy = 0.5 * (anchors[:, 0] + anchors[:, 2]), 0.5 * (anchors[:, 1] + anchors[:, 3])
        return torch.stack((cx - codes[:, 0], cy - codes[:, 1], cx + codes[:, 2], cy + codes[:, 3]), dim=1)
