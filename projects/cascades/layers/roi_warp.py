"""Differentiable RoI warping (MNC, Dai et al. 2016, Eqs. 6-9) with gradients w.r.t. the box coordinates.

The compiled kernels are in csrc/roi_warp/; this module registers their autograd formula and fake
(shape-only) kernels with ``torch.library`` and offers the public function :func:`roi_warp` and the
module :class:`RoIWarp`.

Semantics (see csrc/roi_warp/roi_warp.h for the derivation):

- each output cell takes ONE bilinear sample at the centre of its cell of a grid spanning the box
  (``sample_at="center"``, so the result equals ``torchvision.ops.roi_align(..., sampling_ratio=1)``),
  or at the cell's start (``sample_at="start"``, the released MNC code's convention);
- out of the map (torchvision's rule): a sample with ``y < -1`` or ``y > H`` (or likewise in x) is 0;
  a sample inside ``[-1, H]`` reads the map with its coordinate clamped into ``[0, H - 1]``;
- gradients are exact where the function is smooth; at the kinks (a sample on an integer coordinate,
  on the clamping border) they are the right-hand derivative, and a clamped coordinate has gradient 0;
  with ``aligned=False`` a box narrower than one feature cell is widened to one (torchvision's rule)
  and its width then has gradient 0. The batch index (column 0 of ``rois``) gets gradient 0.
"""

import math
import numbers
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from cascades import _C  # noqa: F401  (loads the compiled kernels: registers torch.ops.cascades.*)

__all__ = ["NonFiniteBoxError", "roi_warp", "RoIWarp"]

_SAMPLE_OFFSETS = {"center": 0.5, "start": 0.0}


@torch.library.register_fake("cascades::roi_warp_forward")
def _roi_warp_forward_fake(input, rois, spatial_scale, pooled_height, pooled_width, pool_size, aligned,
                           sample_offset):
    output = input.new_empty((rois.shape[0], input.shape[1], pooled_height, pooled_width))
    argmax_shape = output.shape if pool_size > 1 else (0,)
    return output, input.new_empty(argmax_shape, dtype=torch.uint8)


@torch.library.register_fake("cascades::roi_warp_backward")
def _roi_warp_backward_fake(grad_output, input, rois, argmax, spatial_scale, pooled_height, pooled_width,
                            pool_size, aligned, sample_offset):
    return torch.empty_like(input), torch.empty_like(rois)


def _setup_context(ctx, inputs, output):
    input, rois, *params = inputs
    ctx.save_for_backward(input, rois, output[1])
    ctx.params = params


def _backward(ctx, grad_output, _grad_argmax):
    input, rois, argmax = ctx.saved_tensors
    if not (ctx.needs_input_grad[0] or ctx.needs_input_grad[1]):
        return (None,) * (2 + len(ctx.params))
    grad_input, grad_rois = torch.ops.cascades.roi_warp_backward(
        grad_output, input, rois, argmax, *ctx.params
    )
    return (
        grad_input if ctx.needs_input_grad[0] else None,
        grad_rois if ctx.needs_input_grad[1] else None,
        *(None,) * len(ctx.params),
    )


torch.library.register_autograd("cascades::roi_warp_forward", _backward, setup_context=_setup_context)


class NonFiniteBoxError(ValueError, FloatingPointError):
    """A box with a NaN or infinite coordinate. A ValueError (bad input), and a FloatingPointError like
    detectron2's own non-finite checks, so that a trainer treats it as a sign of divergence."""


def _check_spatial_scale(value, name: str = "spatial_scale") -> float:
    expected = f"roi_warp: {name} must be a finite number > 0 (the feature map's size relative to the image, " \
               f"e.g. 1/16), got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(expected)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(expected)
    return float(value)


def _check_aligned(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"roi_warp: aligned must be True or False, got {value!r}")
    return bool(value)


def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"roi_warp: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if min(value) < 1:
        raise ValueError(f"roi_warp: {name} must be >= 1, got {tuple(value)}")
    return tuple(value)


def _as_roi_tensor(rois: Union[Tensor, Sequence[Tensor]], input: Tensor) -> Tensor:
    """torchvision's two forms: a K x 5 tensor, or a list of L_i x 4 boxes, one tensor per image."""
    if isinstance(rois, (list, tuple)):
        if len(rois) != input.shape[0]:
            raise ValueError(f"roi_warp: rois as a list needs one box tensor per image ({input.shape[0]}), "
                             f"got {len(rois)}")
        for i, boxes in enumerate(rois):
            if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
                raise ValueError(f"roi_warp: rois[{i}] must be an L x 4 tensor of boxes (x1, y1, x2, y2), got "
                                 f"{getattr(boxes, 'shape', type(boxes).__name__)}")
        if rois:
            index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(rois)])
            return torch.cat([index, torch.cat(list(rois))], dim=1)
        return input.new_zeros((0, 5))
    if not isinstance(rois, Tensor):
        raise TypeError(f"roi_warp: rois must be a Tensor or a list of Tensors, got {type(rois).__name__}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"roi_warp: rois must be a K x 5 tensor (batch index, x1, y1, x2, y2), got shape "
                         f"{tuple(rois.shape)}")
    return rois


def _autocast_on(input: Tensor) -> bool:
    """Whether the op's autocast kernel (csrc/roi_warp/roi_warp_autocast.cpp) takes this call: it runs
    the op in float32 on the upcast input and rois, and casts the output back to the input's dtype."""
    return torch.is_autocast_enabled(input.device.type)


def _check_input(input: Tensor):
    if not isinstance(input, Tensor):
        raise TypeError(f"roi_warp: input must be a Tensor, got {type(input).__name__}")
    if input.dim() != 4:
        raise ValueError(f"roi_warp: input must be N x C x H x W, got shape {tuple(input.shape)}")
    low_precision = input.is_cuda or _autocast_on(input)
    supported = (torch.float32, torch.float64) + ((torch.float16, torch.bfloat16) if low_precision else ())
    if input.dtype not in supported:
        raise TypeError(f"roi_warp: input dtype must be one of {[str(d) for d in supported]} on "
                        f"{input.device.type}, got {input.dtype}")


def _check_rois_match(input: Tensor, rois: Tensor):
    if rois.dtype != input.dtype and not _autocast_on(input):
        raise TypeError(f"roi_warp: rois dtype {rois.dtype} must equal input dtype {input.dtype}")
    if rois.device != input.device:
        raise ValueError(f"roi_warp: rois are on {rois.device} but input is on {input.device}")


def _check_roi_values(input: Tensor, rois: Tensor):
    """Finite boxes and integral batch indices in [0, N).

    On CUDA this copies the rois to the host (one synchronization): the kernels themselves never read
    out of bounds (a bad roi yields NaN), but only the host can raise. The CPU kernels check too, for
    direct calls of the op."""
    if rois.shape[0] == 0 or torch.compiler.is_compiling():
        return
    # NumPy on a host copy: a few microseconds, where as many small torch ops cost tens.
    r = rois.detach().to("cpu", torch.float64).numpy()
    index = r[:, 0]
    finite = np.isfinite(r[:, 1:]).all(axis=1)
    bad = ~finite | (index < 0) | (index >= input.shape[0]) | (index != np.floor(index))
    if not bad.any():
        return
    k = int(np.flatnonzero(bad)[0])
    if not finite[k]:
        raise NonFiniteBoxError(f"roi_warp: rois[{k}] has a non-finite box {tuple(r[k, 1:].tolist())}")
    raise ValueError(f"roi_warp: rois[{k}, 0] = {index[k]:g} is not a batch index in [0, {input.shape[0]})")


def roi_warp(
    input: Tensor,
    rois: Union[Tensor, List[Tensor]],
    output_size: Union[int, Tuple[int, int]],
    spatial_scale: float = 1.0,
    aligned: bool = True,
    pool_size: Optional[int] = None,
    sample_at: str = "center",
) -> Tensor:
    """Warps the feature map inside each box to ``output_size`` by bilinear interpolation.

    Args:
        input: N x C x H x W features (float32/float64; also float16/bfloat16 on CUDA, and on any device
            under ``torch.autocast``, which runs the op in float32 and returns the input's dtype).
        rois: K x 5 (batch index, x1, y1, x2, y2) in image coordinates, or a list of N tensors of
            L_i x 4 boxes (torchvision's conventions). Gradients flow into the four box coordinates.
        output_size: the warp grid (h, w) or one int for a square grid.
        spatial_scale: feature-map scale relative to the image (1 / stride).
        aligned: shift box corners by -0.5 feature pixel (detectron2's ROIAlignV2); when False,
            boxes narrower than one feature pixel are widened to one (torchvision's rule).
        pool_size: when k > 1, k x k max pooling with stride k follows the warp (MNC: a 28 x 28 warp
            -> 2 x 2 max -> 14 x 14); ``output_size`` must be divisible by k. Ties go to the first maximum.
        sample_at: "center" (the cell centre, torchvision's roi_align with sampling_ratio=1) or
            "start" (the cell's top-left corner, the released MNC code's convention).

    Returns:
        K x C x (h / k) x (w / k) features.
    """
    return _roi_warp(input, rois, output_size, spatial_scale, aligned, pool_size, sample_at, check_values=True)


def _roi_warp(input, rois, output_size, spatial_scale, aligned, pool_size, sample_at, *, check_values: bool):
    """:func:`roi_warp`; ``check_values=False`` skips the value check of the rois (and its device sync),
    for callers that checked them already."""
    warp_h, warp_w = _pair(output_size, "output_size")
    spatial_scale = _check_spatial_scale(spatial_scale)
    aligned = _check_aligned(aligned)
    _check_input(input)
    rois = _as_roi_tensor(rois, input)
    _check_rois_match(input, rois)
    if check_values:
        _check_roi_values(input, rois)
    if pool_size is None:
        pool_size = 1
    if not isinstance(pool_size, int) or isinstance(pool_size, bool) or not 1 <= pool_size <= 16:
        raise ValueError(f"roi_warp: pool_size must be None or an int in [1, 16], got {pool_size!r}")
    if warp_h % pool_size or warp_w % pool_size:
        raise ValueError(f"roi_warp: output_size {(warp_h, warp_w)} must be divisible by pool_size {pool_size}")
    if sample_at not in _SAMPLE_OFFSETS:
        raise ValueError(f"roi_warp: sample_at must be one of {list(_SAMPLE_OFFSETS)}, got {sample_at!r}")
    output, _ = torch.ops.cascades.roi_warp_forward(
        input, rois, spatial_scale, warp_h // pool_size, warp_w // pool_size, pool_size, aligned,
        _SAMPLE_OFFSETS[sample_at],
    )
    return output


class RoIWarp(nn.Module):
    """Module form of :func:`roi_warp`, shaped like detectron2's ``ROIAlign``: like it, it casts the rois
    to the features' dtype (detectron2's ``Boxes`` are float32 while features may be float16); the cast
    is differentiable, so box gradients still flow. Under ``torch.autocast`` the rois are left as they
    are: the op's autocast kernel runs it in float32, so boxes keep their float32 precision."""

    # RoIWarpPooler checks all its boxes at once, and sets this for its level poolers.
    _rois_checked_by_caller = False

    def __init__(
        self,
        output_size: Union[int, Tuple[int, int]],
        spatial_scale: float,
        aligned: bool = True,
        pool_size: Optional[int] = None,
        sample_at: str = "center",
    ):
        super().__init__()
        self.output_size = _pair(output_size, "output_size")
        self.spatial_scale = _check_spatial_scale(spatial_scale)
        self.aligned = _check_aligned(aligned)
        self.pool_size = pool_size
        self.sample_at = sample_at

    def forward(self, input: Tensor, rois: Union[Tensor, List[Tensor]]) -> Tensor:
        if isinstance(rois, Tensor) and isinstance(input, Tensor) and not _autocast_on(input):
            rois = rois.to(input.dtype)
        return _roi_warp(input, rois, self.output_size, self.spatial_scale, self.aligned, self.pool_size,
                         self.sample_at, check_values=not self._rois_checked_by_caller)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, aligned={self.aligned}, "
                f"pool_size={self.pool_size}, sample_at={self.sample_at!r}")
