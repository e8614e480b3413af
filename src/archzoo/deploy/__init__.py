"""Deploying a model: export to ONNX / TorchScript / ``torch.export`` with the outputs checked on the
spot (:mod:`.export`), the graphs exported for each task (:mod:`.graph`), and INT8 / FP16 ONNX with an
accuracy guard (:mod:`.quantize`). See docs/deploy.md."""

from .export import (
           export_model,
           export_onnx,
           export_pt2,
           export_torchscript,
           ort_session,
           read_metadata,
)
from .quantize import quantize_model

__all__ = [
           "export_model",
           "export_onnx",
           "export_pt2",
           "export_torchscript",
           "ort_session",
           "quantize_model",
           "read_metadata",
]
