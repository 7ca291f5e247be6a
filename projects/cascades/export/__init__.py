"""Export of the cascades' inference: torch.export, ONNX and TorchScript (docs/EXPORT.md)."""
from .export_safe_variants import export_safe
from .formats import FORMATS, check_exportable, export, inference_adapter, load, output_names
from .unsupported import UnsupportedExport

__all__ = ["FORMATS", "UnsupportedExport", "check_exportable", "export", "export_safe", "inference_adapter",
           "load", "output_names"]
