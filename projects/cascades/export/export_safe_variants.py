"""Export-safe variants of the detectron2 functions that ``torch.export`` cannot trace, swapped in only
while exporting (:func:`export_safe`).

``torch.export`` traces with symbolic sizes: the number of boxes left after a score threshold or an NMS
is a size known only at run time, and Python code that branches on such a value (``if mask.all()``,
``assert tensor.all()``, ``if n > 4000``, ``len(instances)``) cannot be traced. Each variant below is
detectron2's function with only those branches replaced by branch-free code that gives the same
result; the eager model never runs them. One is of our own code: :func:`batched_nms_topk`, whose loop
is the data-dependent part (MNC's mask voting calls it).
"""
import contextlib
import types
from typing import List, Tuple
from unittest import mock

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import nms

from detectron2.layers import cat
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.structures import Boxes, ImageList, Instances

from ..modeling.fast_rcnn_inference import with_globals

__all__ = ["batched_nms_topk", "convert_boxes_to_pooler_format", "export_safe", "fast_rcnn_inference",
           "find_top_rpn_proposals"]


class _ImageList:
    """Stands for ``ImageList`` in ``GeneralizedRCNN.preprocess_image`` while exporting."""

    @staticmethod
    def from_tensors(tensors, size_divisibility=0, pad_value=0.0, padding_constraints=None) -> ImageList:
        """``ImageList.from_tensors`` of one image. Changed: the padded size is computed from the image's
        shape in Python (detectron2 computes it in tensors, whose values ``torch.export`` does not know,
        which makes every feature map's size a run-time value)."""
        if len(tensors) != 1:
            raise ValueError(f"export: one image per call, got {len(tensors)}")
        image = tensors[0]
        height, width = image.shape[-2:]
        square_size = (padding_constraints or {}).get("square_size", 0)
        padded_h, padded_w = (square_size, square_size) if square_size > 0 else (height, width)
        size_divisibility = (padding_constraints or {}).get("size_divisibility", size_divisibility)
        if size_divisibility > 1:
            padded_h = (padded_h + size_divisibility - 1) // size_divisibility * size_divisibility
            padded_w = (padded_w + size_divisibility - 1) // size_divisibility * size_divisibility
        padded = F.pad(image, [0, padded_w - width, 0, padded_h - height], value=pad_value)
        image_size = (height, width)
        if torch.jit.is_tracing():
            # As detectron2's: under torch.jit.trace sizes are tensors, so that the trace (boxes clipped
            # to the image, the image size returned) follows the input's size.
            image_size = torch.stack([height, width])
        return ImageList(padded.unsqueeze(0).contiguous(), [image_size])


def _size_min(a, b):
    """``min`` of two sizes, without a Python comparison: symbolic under torch.export, a tensor under
    torch.jit.trace (where sizes are tensors, so that the trace follows the input's size)."""
    return torch.clamp(a, max=b) if isinstance(a, Tensor) else torch.sym_min(a, b)


def _size_max(a, b):
    """``max`` of two sizes, as :func:`_size_min`."""
    return torch.maximum(a, b) if isinstance(a, Tensor) else torch.sym_max(a, b)


def _clip(boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """``Boxes.clip`` without its ``assert torch.isfinite(boxes).all()``, a check on values; the
    callers drop or mask non-finite boxes themselves."""
    h, w = image_size
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    return torch.stack((x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)), dim=1)


class _Boxes(Boxes):
    """detectron2's ``Boxes`` without its two checks on values, which ``torch.export`` cannot trace:
    the constructor's ``tensor.numel() == 0`` branch (a reshape that is a no-op for the N x 4 float32
    tensors given here) and ``clip``'s ``assert torch.isfinite(tensor).all()`` (the callers drop or
    mask non-finite boxes)."""

    def __init__(self, tensor: Tensor):
        self.tensor = tensor

    def clip(self, box_size: Tuple[int, int]) -> None:
        self.tensor = _clip(self.tensor, box_size)


def _boxes(tensor: Tensor) -> Boxes:
    """A detectron2 ``Boxes`` of ``tensor``, built without the constructor's check as :class:`_Boxes`
    is: of detectron2's own class, because the detections' boxes leave the model, whose output schema
    names their class."""
    boxes = Boxes.__new__(Boxes)
    boxes.tensor = tensor
    return boxes


def batched_nms_topk(boxes: Tensor, scores: Tensor, classes: Tensor, iou_threshold: float, topk: int) -> Tensor:
    """:func:`cascades.layers.batched_nms_topk` (``batched_nms(...)[:topk]``), in one NMS over all the
    candidates: ours runs NMS over a growing prefix of the best candidates until it keeps ``topk``, a
    loop whose count depends on the data. The classes are moved apart by the candidates' extent, 0
    included so that no candidates need no check."""
    extent = torch.cat([boxes.flatten(), boxes.new_zeros(1)])
    offsets = classes.to(boxes.dtype) * (extent.max() - extent.min() + 1)
    keep = nms(boxes + offsets[:, None], scores, iou_threshold)
    return keep if topk < 0 else keep[:topk]


def convert_boxes_to_pooler_format(box_lists: List[Boxes]) -> Tensor:
    """detectron2's ``convert_boxes_to_pooler_format`` (K x 5 rois: batch index, box). Changed: the batch
    index column is filled per image (detectron2 makes a tensor of the box counts, values that
    ``torch.export`` cannot read back as sizes)."""
    boxes = cat([b.tensor for b in box_lists], dim=0)
    indices = cat([torch.full_like(b.tensor[:, :1], i) for i, b in enumerate(box_lists)], dim=0)
    return cat([indices, boxes], dim=1)


def _per_level_nms(boxes: Tensor, scores: Tensor, levels: Tensor, num_levels: int, iou_threshold: float):
    """torchvision's ``batched_nms`` by one NMS per level (its ``_batched_nms_vanilla``), the levels
    counted in Python. torchvision chooses between that and one NMS over boxes moved apart per level
    by the number of boxes, a size known only at run time; both keep the same boxes, and the
    per-level one computes the IoUs on the boxes as they are (no rounding of moved coordinates)."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for level in range(num_levels):
        index = (levels == level).nonzero()[:, 0]
        keep_mask[index[nms(boxes[index], scores[index], iou_threshold)]] = True
    keep = keep_mask.nonzero()[:, 0]
    return keep[scores[keep].sort(descending=True)[1]]


def _offset_nms(boxes: Tensor, scores: Tensor, classes: Tensor, image_size, iou_threshold: float):
    """Per-class NMS as one NMS over boxes moved apart per class, by a distance the clipped boxes
    cannot span (the image's larger side + 1): torchvision's offset is the boxes' maximum + 1, which
    fails on no boxes and would need a check on their number."""
    offsets = classes.to(boxes.dtype) * (_size_max(*image_size) + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def find_top_rpn_proposals(
    proposals: List[Tensor],
    pred_objectness_logits: List[Tensor],
    image_sizes: List[Tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> List[Instances]:
    """detectron2's ``find_top_rpn_proposals`` at inference. Changed: non-finite and too small boxes
    are dropped by one mask, always (detectron2 checks ``valid_mask.all()`` and ``keep.sum()`` first),
    the clip has no finiteness assert, and the NMS is :func:`_per_level_nms`."""
    if training:
        raise ValueError("the export-safe find_top_rpn_proposals is for inference only")
    num_images = len(image_sizes)
    device = proposals[0].device
    topk_scores, topk_proposals, level_ids = [], [], []
    batch_idx = torch.arange(num_images, device=device)
    for level_id, (proposals_i, logits_i) in enumerate(zip(proposals, pred_objectness_logits)):
        num_proposals_i = _size_min(logits_i.shape[1], pre_nms_topk)
        topk_scores_i, topk_idx = logits_i.topk(num_proposals_i, dim=1)
        topk_proposals.append(proposals_i[batch_idx[:, None], topk_idx])
        topk_scores.append(topk_scores_i)
        level_ids.append(torch.full((num_proposals_i,), level_id, dtype=torch.int64, device=device))
    topk_scores = cat(topk_scores, dim=1)
    topk_proposals = cat(topk_proposals, dim=1)
    level_ids = cat(level_ids, dim=0)

    results = []
    for n, image_size in enumerate(image_sizes):
        boxes = topk_proposals[n]
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(topk_scores[n])
        boxes = _clip(boxes, image_size)
        keep = valid & _boxes(boxes).nonempty(threshold=min_box_size)
        boxes, scores, lvl = boxes[keep], topk_scores[n][keep], level_ids[keep]
        keep = _per_level_nms(boxes, scores, lvl, len(proposals), nms_thresh)[:post_nms_topk]
        res = Instances(image_size)
        res.proposal_boxes = _boxes(boxes[keep])
        res.objectness_logits = scores[keep]
        results.append(res)
    return results


def fast_rcnn_inference_single_image(
    boxes: Tensor,
    scores: Tensor,
    image_shape: Tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
):
    """detectron2's ``fast_rcnn_inference_single_image``. Changed: rows with a non-finite box or score
    are excluded by the score filter instead of being removed first (detectron2 checks
    ``valid_mask.all()``), so the returned row indices count every input row, as
    :func:`cascades.modeling.fast_rcnn_inference.fast_rcnn_inference`'s do; the clip has no finiteness
    assert; the NMS is :func:`_offset_nms`."""
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    scores = scores[:, :-1]
    num_bbox_reg_classes = boxes.shape[1] // 4
    boxes = _clip(boxes.reshape(-1, 4), image_shape).view(-1, num_bbox_reg_classes, 4)
    filter_mask = (scores > score_thresh) & valid[:, None]
    filter_inds = filter_mask.nonzero()
    if num_bbox_reg_classes == 1:
        boxes = boxes[filter_inds[:, 0], 0]
    else:
        boxes = boxes[filter_mask]
    scores = scores[filter_mask]
    keep = _offset_nms(boxes, scores, filter_inds[:, 1], image_shape, nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    boxes, scores, filter_inds = boxes[keep], scores[keep], filter_inds[keep]
    result = Instances(image_shape)
    result.pred_boxes = _boxes(boxes)
    result.scores = scores
    result.pred_classes = filter_inds[:, 1]
    return result, filter_inds[:, 0]


def fast_rcnn_inference(boxes, scores, image_shapes, score_thresh, nms_thresh, topk_per_image):
    """detectron2's ``fast_rcnn_inference`` with :func:`fast_rcnn_inference_single_image`."""
    results = [
        fast_rcnn_inference_single_image(b, s, shape, score_thresh, nms_thresh, topk_per_image)
        for b, s, shape in zip(boxes, scores, image_shapes)
    ]
    return [r[0] for r in results], [r[1] for r in results]


def _create_proposals_from_boxes(self, boxes, image_sizes, *args, **kwargs):
    """``CascadeROIHeads._create_proposals_from_boxes`` at inference (where it only clips: the other
    arguments of subclasses' overrides concern training), with the clip of :func:`_clip`."""
    if self.training:
        raise ValueError("the export-safe _create_proposals_from_boxes is for inference only")
    proposals = []
    for boxes_per_image, image_size in zip(boxes, image_sizes):
        prop = Instances(image_size)
        prop.proposal_boxes = _boxes(_clip(boxes_per_image.detach(), image_size))
        proposals.append(prop)
    return proposals


# Modules whose ``len()`` of boxes, instances or tensors must stay symbolic (detectron2's
# ``patch_builtin_len`` does this for its tracing): Python's ``len`` converts the size to an int, which
# fails for a size known only at run time (the number of proposals or detections).
_LEN_MODULES = [
    "detectron2.structures.instances",
    "detectron2.modeling.poolers",
    "cascades.modeling.semantic_cascade_roi_heads",
    "cascades.modeling.scnet",
    "cascades.modeling.htc",
    "cascades.modeling.mnc_roi_heads",
    "cascades.modeling.mnc_mask_voting",
    "detectron2.structures.boxes",
]
# MNC's heads and mask voting: their ``Boxes`` and top-k NMS (see :class:`_Boxes`, :func:`batched_nms_topk`).
_MNC_GLOBALS = {
    "cascades.modeling.mnc_roi_heads.Boxes": _Boxes,
    "cascades.modeling.mnc_mask_voting.Boxes": _Boxes,
    "cascades.modeling.mnc_mask_voting.batched_nms_topk": batched_nms_topk,
}
# The modules whose code calls ``fast_rcnn_inference`` at the end of a cascade: detectron2's
# ``CascadeROIHeads._forward_box`` and our cascades' detections (the stages' scores averaged first).
_FAST_RCNN_INFERENCE_CALLERS = [
    "detectron2.modeling.roi_heads.cascade_rcnn",
    "cascades.modeling.semantic_cascade_roi_heads",
]


def _nms_fake(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """torchvision's fake ``nms`` with the kept count's lower bound 0 instead of its 2 (torchvision
    creates the size with ``create_unbacked_symint()``, whose default minimum is 2): torch.export turns
    the bound into a run-time assertion, and a program so exported fails on an image where the NMS keeps
    fewer than two boxes."""
    num_kept = torch.library.get_ctx().new_dynamic_size(min=0)
    return boxes.new_empty(num_kept, dtype=torch.long)


@contextlib.contextmanager
def _nms_of_any_size():
    """:func:`_nms_fake` stands for torchvision's within the block (a registration undone on exit)."""
    library = torch.library.Library("torchvision", "FRAGMENT")
    try:
        torch.library.register_fake("torchvision::nms", _nms_fake, lib=library)
        yield
    finally:
        library._destroy()


def _bind(obj, name: str, function):
    """Sets ``obj.name`` to ``function`` bound to ``obj``; returns the undo."""
    setattr(obj, name, types.MethodType(function, obj))
    return lambda: delattr(obj, name)


@contextlib.contextmanager
def export_safe(model):
    """Within the block, ``model``'s inference runs the export-safe variants: bound to this model
    instance's methods, and to the module globals that name them (``len``, ``fast_rcnn_inference``,
    ``convert_boxes_to_pooler_format``, MNC's ``Boxes`` and ``batched_nms_topk``) in the modules listed
    above, with torchvision's fake ``nms`` replaced (:func:`_nms_fake`); all undone on exit."""
    from detectron2.export.torchscript_patch import patch_builtin_len

    rpn = model.proposal_generator
    undo = [
        _bind(model, "preprocess_image", with_globals(GeneralizedRCNN.preprocess_image, ImageList=_ImageList)),
        _bind(rpn, "predict_proposals",
              with_globals(type(rpn).predict_proposals, find_top_rpn_proposals=find_top_rpn_proposals)),
    ]
    if isinstance(model.roi_heads, CascadeROIHeads):
        undo.append(_bind(model.roi_heads, "_create_proposals_from_boxes", _create_proposals_from_boxes))
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(patch_builtin_len(_LEN_MODULES))
            stack.enter_context(_nms_of_any_size())
            stack.enter_context(mock.patch("detectron2.modeling.poolers.convert_boxes_to_pooler_format",
                                           convert_boxes_to_pooler_format))
            for module in _FAST_RCNN_INFERENCE_CALLERS:
                stack.enter_context(mock.patch(f"{module}.fast_rcnn_inference", fast_rcnn_inference))
            for name, value in _MNC_GLOBALS.items():
                stack.enter_context(mock.patch(name, value))
            yield model
    finally:
        for u in undo:
            u()
