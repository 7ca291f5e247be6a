"""The released MNC code's box-coordinate gradient: clipped per regression delta, zero for boxes cut by the
image border.

The paper back-propagates the full Eq. 9 gradient through the box coordinates. The authors' Caffe code
(daijifeng001/MNC, ``use_clip: 1, clip_base: 512`` in ``models/VGG16/mnc_5stage/train.prototxt``) changes it
in the backward of the two layers that turn regression deltas into RoIs:

- ``lib/pylayer/proposal_layer.py`` (stage 1): the RoI warp's gradient w.r.t. a proposal's corners is
  chained to the RPN's anchor deltas (``dL/ddx = dL/dx_c * w_a``, ``dL/ddw = dL/dw * exp(dw) * w_a``, the
  width/height scaling of the decoding), multiplied by 0 for a proposal that was clipped to the image
  or whose anchor crosses the border, and then clipped to [-1/512, 1/512] element-wise;
- ``lib/pylayer/stage_bridge_layer.py`` (stage 3 -> 4): the same for stage 3's deltas of the class
  whose regressor moved the box (0 for a box clipped to the image), clipped to [-1/512, 1/512]. Its
  gradient into its input RoIs (towards stage 1) is neither clipped nor masked there: it reaches the RPN
  through the proposal layer above, which clips it at the RPN's deltas.

Both clip only the branch that leads to the RoIs; the RPN's and stage 3's own regression losses reach
the same deltas unclipped (Caffe's split layer adds the branches after the clip).

The threshold and the loss normalization: Caffe ran 1 image per iteration, every loss normalized per
image (RoIs, anchors or mask pixels of that image), and averaged 8 iterations' gradients after the
backward (``iter_size: 8``), i.e. after the clip. detectron2 normalizes each loss over the N images of a
device's batch, so one image's gradient is 1/N of Caffe's for the same loss; the clip acting on it is
therefore ``clip / N`` (DDP's average across devices comes after the backward, like ``iter_size``).
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["boxes_inside_image", "clip_delta_gradient", "delta_gradient_threshold"]


class _ClipDeltaGradient(torch.autograd.Function):
    """Identity forward; backward: the gradient of each row times ``keep``, clamped to [-t, t]."""

    @staticmethod
    def forward(ctx, deltas: Tensor, keep: Tensor, threshold: Tensor):
        ctx.save_for_backward(keep, threshold)
        return deltas.view_as(deltas)

    @staticmethod
    def backward(ctx, grad: Tensor):
        keep, threshold = ctx.saved_tensors
        grad = torch.minimum(torch.maximum(grad, -threshold), threshold)
        return grad * keep.unsqueeze(-1).to(grad.dtype), None, None


def clip_delta_gradient(deltas: Tensor, keep: Tensor, threshold: Tensor) -> Tensor:
    """
    ``deltas`` unchanged, with the released code's backward.

    Args:
        deltas: (..., 4) regression deltas, as the network outputs them.
        keep: (...) bool, False where the box decoded from the row was cut by the image border (its
            gradient becomes 0).
        threshold: (4,) the clip per coordinate of the network's output (see
            :func:`delta_gradient_threshold`).
    """
    if keep.shape != deltas.shape[:-1]:
        raise ValueError(f"clip_delta_gradient: keep must have shape {tuple(deltas.shape[:-1])}, got {tuple(keep.shape)}")
    return _ClipDeltaGradient.apply(deltas, keep, threshold.to(deltas))


def delta_gradient_threshold(clip: float, num_images: int, weights: Sequence[float], device=None) -> Tensor:
    """The clip on the gradient w.r.t. the network's output deltas, per coordinate (4,).

    ``clip`` is the released code's threshold (1/512) on the gradient w.r.t. the deltas as they move the
    box (dx, dy, dw, dh), with Caffe's per-image loss normalization. Two conversions: detectron2 averages
    each loss over ``num_images`` (see the module docstring), and a Box2BoxTransform divides the network's
    output by ``weights`` before decoding (the gradient w.r.t. the output is the decoded delta's divided by
    the weight, so the clip is too)."""
    w = torch.as_tensor(tuple(weights), dtype=torch.float32, device=device)
    return clip / max(num_images, 1) / w


def boxes_inside_image(boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """(...) bool: the (..., 4) XYXY boxes that clipping to ``image_size`` (h, w) leaves unchanged."""
    h, w = image_size
    return (boxes[..., 0] >= 0) & (boxes[..., 1] >= 0) & (boxes[..., 2] <= w) & (boxes[..., 3] <= h)
