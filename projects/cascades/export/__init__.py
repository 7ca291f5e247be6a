"""Export of the cascades' inference: torch.export, ONNX and TorchScript (docs/EXPORT.md)."""
from .export_safe import export_safe

__all__ = ["export_safe"]
