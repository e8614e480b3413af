"""Dilation in place of stride: a backbone with a chosen output stride.

A classifier reduces its input 32 times; dense prediction wants finer maps. Removing a layer's
stride and dilating every later convolution by the same factor keeps each filter's receptive
field, so pretrained weights still fit (the "hole algorithm" of DeepLab, Chen et al. 2016,
arXiv:1606.00915; dilated convolutions, Yu & Koltun 2016, arXiv:1511.07122). The layer that
loses its stride keeps the dilation it had; the layers after it use the multiplied one — the
rule of torchvision's ``replace_stride_with_dilation`` and of timm's ``output_stride``.
"""

from __future__ import annotations


class OutputStride:
    """Hands out ``(stride, dilation)`` layer by layer so the network stops at ``output_stride``.

    Args:
        output_stride: the reduction to stop at; ``None`` keeps every stride.
        stride: the reduction of what comes before (a stem that is never dilated).

    Call it with the stride a layer asks for; it returns the stride to use and the layer's
    dilation. ``stride`` is the reduction so far (the true one, reported in ``feature_info``),
    ``reachable`` every reduction a layer boundary had without dilation.
    """

    def __init__(self, output_stride: int | None, stride: int = 1):
        self.output_stride = output_stride
        self.stride = stride
        self.dilation = 1
        self.nominal = stride
        self.reachable = [stride]

    def __call__(self, stride: int) -> tuple[int, int]:
        self.nominal *= stride
        if stride > 1:
            self.reachable.append(self.nominal)
        if self.output_stride is not None and self.stride * stride > self.output_stride:
            dilation, self.dilation = self.dilation, self.dilation * stride
            return 1, dilation
        self.stride *= stride
        return stride, self.dilation

    def check(self, model_name: str = "this network") -> None:
        """Raise a ``ValueError`` unless the network reached ``output_stride`` (call after building)."""
        if self.output_stride is not None and self.output_stride not in self.reachable:
            raise ValueError(f"output_stride={self.output_stride} is not reachable for {model_name}: "
                             f"choose one of {sorted(set(self.reachable))}")
