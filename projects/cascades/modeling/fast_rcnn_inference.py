"""detectron2's ``fast_rcnn_inference`` with the per-class NMS of :func:`batched_nms_topk`.

The cascades segment detections down to a score of 0.001 (the released SCNet/HTC test config), so an
image's 1000 RoIs x 80 classes give tens of thousands of candidates, for which detectron2's
``batched_nms`` runs one NMS per class. Same detections, same order (up to equal scores).
"""
from typing import List, Tuple

import torch

from detectron2.structures import Boxes, Instances

from ..layers.nms import batched_nms_topk

__all__ = ["fast_rcnn_inference"]


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
    results = [
        _single_image(b, s, shape, score_thresh, nms_thresh, topk_per_image)
        for b, s, shape in zip(boxes, scores, image_shapes)
    ]
    return [r[0] for r in results], [r[1] for r in results]


def _single_image(boxes, scores, image_shape, score_thresh, nms_thresh, topk_per_image):
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    rows = valid.nonzero()[:, 0]
    boxes, scores = boxes[rows], scores[rows, :-1]  # the last column is background
    num_reg_classes = boxes.shape[1] // 4
    clipped = Boxes(boxes.reshape(-1, 4))
    clipped.clip(image_shape)
    boxes = clipped.tensor.view(-1, num_reg_classes, 4)

    row, cls = (scores > score_thresh).nonzero(as_tuple=True)
    boxes = boxes[row, cls if num_reg_classes > 1 else 0]
    scores = scores[row, cls]
    keep = batched_nms_topk(boxes, scores, cls, nms_thresh, topk_per_image)

    result = Instances(image_shape)
    result.pred_boxes = Boxes(boxes[keep])
    result.scores = scores[keep]
    result.pred_classes = cls[keep]
    return result, rows[row[keep]]
