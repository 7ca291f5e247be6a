"""Export of the cascades' inference: torch.export, ONNX and TorchScript (docs/EXPORT.md)."""
from .export_safe_variants import export_safe
from .formats import FORMATS, OUTPUT_NAMES, check_exportable, export, inference_adapter, load, to_instances
from .onnx_roi_warp import UnsupportedExport

__all__ = ["FORMATS", "OUTPUT_NAMES", "UnsupportedExport", "check_exportable", "export", "export_safe",
           "inference_adapter", "load", "to_instances"]
