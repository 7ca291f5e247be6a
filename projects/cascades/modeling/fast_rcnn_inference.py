"""detectron2's ``fast_rcnn_inference`` with the per-class NMS of :func:`batched_nms_topk`.

The cascades segment detections down to a score of 0.001 (the released SCNet/HTC test config), so an
image's 1000 RoIs x 80 classes give tens of thousands of candidates, for which detectron2's
``batched_nms`` runs one NMS per class. detectron2's per-image function is run as it is, with only its
``batched_nms`` bound to the top-k NMS: same detections, same order (up to equal scores).
"""
import types
from typing import List, Tuple

import torch

from detectron2.modeling.roi_heads import fast_rcnn

from ..layers.nms import batched_nms_topk

__all__ = ["fast_rcnn_inference", "with_globals"]


def with_globals(function: types.FunctionType, **names) -> types.FunctionType:
    """``function``'s own code, with some of the global names it looks up bound to other objects.

    Calls detectron2's code with one callee swapped, where detectron2 offers no hook, instead of a copy
    of it. Raises if ``function`` no longer looks up one of ``names`` (a detectron2 update renamed it):
    the swap would silently do nothing.
    """
    unknown = sorted(set(names) - set(function.__code__.co_names))
    if unknown:
        raise RuntimeError(f"{function.__module__}.{function.__qualname__} does not look up {unknown}")
    return types.FunctionType(
        function.__code__,
        {**function.__globals__, **names},
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )


def fast_rcnn_inference(
    boxes: List[torch.Tensor],
    scores: List[torch.Tensor],
    image_shapes: List[Tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
):
    """Arguments and results as ``detectron2.modeling.roi_heads.fast_rcnn.fast_rcnn_inference``, except
    that the kept-row indices count every input row (detectron2's count the rows left after dropping
    those with non-finite boxes or scores)."""

    def nms(boxes, scores, classes, iou_thresh):
        # detectron2 keeps the first topk_per_image of what this returns: the top-k NMS computes those.
        return batched_nms_topk(boxes, scores, classes, iou_thresh, topk_per_image)

    single_image = with_globals(fast_rcnn.fast_rcnn_inference_single_image, batched_nms=nms)
    instances, kept_rows = [], []
    for b, s, shape in zip(boxes, scores, image_shapes):
        result, rows = single_image(b, s, shape, score_thresh, nms_thresh, topk_per_image)
        valid_rows = (torch.isfinite(b).all(dim=1) & torch.isfinite(s).all(dim=1)).nonzero()[:, 0]
        instances.append(result)
        kept_rows.append(valid_rows[rows])
    return instances, kept_rows
