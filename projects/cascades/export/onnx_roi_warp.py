"""ONNX translation of the RoI-warp op ``cascades::roi_warp_forward``: ``RoiAlign`` + ``MaxPool``.

``roi_warp`` with ``sample_at="center"`` is torchvision's ``roi_align`` with one sample per bin, and
ONNX's ``RoiAlign`` (opset 16) computes the same function: half_pixel mode is ``aligned=True``
(corners shifted by -0.5 cell), output_half_pixel mode is ``aligned=False``, where both widen a box
narrower than one cell to one (ONNX's reference ``roi_width = max(roi_width, 1.0)``, torchvision's
``max(roi_width, 1.)``); ``sampling_ratio=1`` takes the one sample at the bin centre; both zero a
sample beyond ``[-1, H]`` and clamp one inside it. The fused k x k max pooling is ``MaxPool`` with
kernel and stride k. tests/export/test_onnx_roi_warp.py checks the equality on onnxruntime.

``sample_at="start"`` (the released MNC code's sampling at the cell's corner) has no ``RoiAlign``
equivalent: :func:`check_onnx_roi_warp` refuses it before an export starts.
"""
from onnxscript import opset18 as op
from onnxscript import INT64, UINT8

from torch import nn

from .unsupported import UnsupportedExport

__all__ = ["ONNX_TRANSLATIONS", "check_onnx_roi_warp", "roi_warp_forward"]

_CENTER = 0.5  # roi_warp's sample_offset for sample_at="center"


def _check_sample_offset(sample_offset: float, where: str = "cascades::roi_warp_forward"):
    if sample_offset != _CENTER:
        raise UnsupportedExport(
            f"{where}: sample_at='start' cannot be exported to ONNX: RoiAlign samples each bin at its "
            "centre and has no option for the cell's start corner (the released MNC code's sampling)"
        )


def check_onnx_roi_warp(model: nn.Module):
    """Raises :class:`UnsupportedExport` naming the first RoI warp of ``model`` that ONNX cannot express."""
    from ..layers import RoIWarp

    for name, module in model.named_modules():
        if isinstance(module, RoIWarp) and module.sample_at != "center":
            _check_sample_offset(0.0, f"{name} (RoIWarp)")


def roi_warp_forward(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int, pool_size: int,
                     aligned: bool, sample_offset: float):
    """``cascades::roi_warp_forward`` as ONNX: RoiAlign on the warp grid, then k x k MaxPool. The second
    output, the position of each maximum in its k x k window (for the backward pass), comes from
    MaxPool's indices (where two samples of a window tie up to rounding, either may be named)."""
    _check_sample_offset(sample_offset)
    batch_indices = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=INT64.dtype)
    boxes = op.Slice(rois, [1], [5], [1])
    warp = op.RoiAlign(
        input,
        boxes,
        batch_indices,
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg",
        output_height=pooled_height * pool_size,
        output_width=pooled_width * pool_size,
        sampling_ratio=1,
        spatial_scale=spatial_scale,
    )
    if pool_size == 1:
        return warp, op.Cast(op.ConstantOfShape([0]), to=UINT8.dtype)
    pooled, indices = op.MaxPool(warp, kernel_shape=[pool_size, pool_size], strides=[pool_size, pool_size])
    # MaxPool's indices count the positions of the whole (N, C, H, W) warp; keep those in the window.
    width = pooled_width * pool_size
    row = op.Mod(op.Div(indices, op.Constant(value_int=width)), op.Constant(value_int=pool_size))
    col = op.Mod(indices, op.Constant(value_int=pool_size))
    argmax = op.Add(op.Mul(row, op.Constant(value_int=pool_size)), col)
    return pooled, op.Cast(argmax, to=UINT8.dtype)


def _translations():
    import torch

    from .. import _C  # noqa: F401  registers torch.ops.cascades

    return {torch.ops.cascades.roi_warp_forward.default: roi_warp_forward}


ONNX_TRANSLATIONS = _translations()
