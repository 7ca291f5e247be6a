"""MNC's inference post-processing: per-class NMS, then mask voting (Dai et al. 2016, Sec. 6, "Inference").

Each kept instance's mask becomes the score-weighted pixel average of the masks of every instance of
its class whose box overlaps it by IoU >= ``vote_iou_thresh`` (itself included; the other kept
instances overlap it by less than the NMS threshold, so the voters are the instances it suppressed).
The paper averages the soft masks; the released code (``lib/transform/mask_transform.py``,
``cpu_mask_voting``) binarizes each voter's mask at 0.4 first (``voter_threshold``). The masks live in
different boxes, so they are averaged in a common frame: the union of the voters' mask boxes, sampled at
``resolution`` x ``resolution``. All pairs are processed at once (one ``grid_sample`` and one
``index_add_``), with no Python loop over instances.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from detectron2.structures import BitMasks, Boxes, ROIMasks
from detectron2.structures.boxes import matched_pairwise_iou

from ..layers.nms import batched_nms_topk

__all__ = ["VotedMasks", "nms_and_mask_voting", "vote_masks"]


class VotedMasks:
    """
    MNC's masks before pasting: N soft masks (N x r x r, values in [0, 1]), mask i covering the image
    region ``frames[i]`` (XYXY: the union of its voters' boxes, not the detection box). What
    :class:`MNCROIHeads` returns in ``Instances.pred_voted_masks``; :class:`MNC` pastes them into the
    output image with :meth:`to_bitmasks` (detectron2's ROIMasks, frames as the boxes). Indexable like
    the other fields of an ``Instances``.
    """

    def __init__(self, masks: Tensor, frames: Union[Boxes, Tensor]):
        frames = frames if isinstance(frames, Boxes) else Boxes(frames)
        if masks.dim() != 3 or len(frames) != masks.shape[0]:
            raise ValueError(
                f"VotedMasks: masks must be N x r x r with N frames, got {tuple(masks.shape)} and {len(frames)} frames"
            )
        self.masks = masks
        self.frames = frames

    def __len__(self) -> int:
        return self.masks.shape[0]

    def __getitem__(self, item) -> "VotedMasks":
        if isinstance(item, int):
            item = slice(item, item + 1)
        return VotedMasks(self.masks[item], self.frames[item])

    def to(self, *args, **kwargs) -> "VotedMasks":
        return VotedMasks(self.masks.to(*args, **kwargs), self.frames.to(*args, **kwargs))

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Rescales the frames in place (as ``Boxes.scale``), e.g. to the requested output size."""
        self.frames.scale(scale_x, scale_y)

    def to_bitmasks(self, height: int, width: int, threshold: float) -> BitMasks:
        """The masks pasted into a height x width image and binarized at ``threshold``."""
        return ROIMasks(self.masks).to_bitmasks(self.frames, height, width, threshold)

    def __repr__(self) -> str:
        return f"VotedMasks(num_instances={len(self)}, resolution={self.masks.shape[-1]})"


def _check_rows(name: str, t: Tensor, n: int, trailing: Tuple[int, ...] = ()):
    if t.dim() != 1 + len(trailing) or t.shape[0] != n or tuple(t.shape[1:]) != trailing:
        raise ValueError(f"mask voting: {name} must have shape {(n, *trailing)}, got {tuple(t.shape)}")


def vote_masks(
    masks: Tensor,
    mask_boxes: Tensor,
    target: Tensor,
    voter: Tensor,
    weights: Tensor,
    num_targets: int,
    resolution: int,
    voter_threshold: Optional[float] = None,
) -> Tuple[Tensor, Tensor]:
    """
    Weighted average of soft masks, each defined inside its own box, in a common frame per target.

    Args:
        masks: M x m x m soft masks in [0, 1], mask i covering ``mask_boxes[i]`` (M x 4, XYXY).
        target, voter, weights: P votes: mask ``voter[p]`` votes for target ``target[p]`` (in
            [0, num_targets)) with weight ``weights[p]`` (its score). Every target needs a voter.
        resolution: side of the output masks.
        voter_threshold: if set, each voter's mask, resampled into the frame, is binarized (>= the
            threshold) before averaging, as the released code does.

    Returns:
        num_targets x resolution x resolution averaged masks, and num_targets x 4 frames (the union
        of the voters' boxes) that they cover.
    """
    voter_boxes = mask_boxes[voter]
    # Union of the voters' boxes per target: scatter min of the corners, scatter max of the others.
    inf = torch.full((num_targets, 2), float("inf"), device=masks.device, dtype=mask_boxes.dtype)
    lo = inf.scatter_reduce(0, target[:, None].expand(-1, 2), voter_boxes[:, :2], "amin")
    hi = (-inf).scatter_reduce(0, target[:, None].expand(-1, 2), voter_boxes[:, 2:], "amax")
    frames = torch.cat([lo, hi], dim=1)

    # Sampling grid: cell centres of each pair's target frame, in the voter box's [-1, 1] coordinates.
    cells = (torch.arange(resolution, device=masks.device, dtype=mask_boxes.dtype) + 0.5) / resolution
    frame = frames[target]
    xs = frame[:, 0:1] + cells[None] * (frame[:, 2:3] - frame[:, 0:1])  # P x R
    ys = frame[:, 1:2] + cells[None] * (frame[:, 3:4] - frame[:, 1:2])
    size = (voter_boxes[:, 2:] - voter_boxes[:, :2]).clamp(min=1e-6)
    gx = (xs - voter_boxes[:, 0:1]) / size[:, 0:1] * 2 - 1
    gy = (ys - voter_boxes[:, 1:2]) / size[:, 1:2] * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(-1, resolution, -1), gy[:, :, None].expand(-1, -1, resolution)], dim=-1)
    # Outside its box a mask is background: zero padding.
    sampled = F.grid_sample(
        masks[voter][:, None].to(grid.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[:, 0]
    if voter_threshold is not None:
        sampled = (sampled >= voter_threshold).to(sampled.dtype)

    w = weights.to(sampled.dtype)
    num = sampled.new_zeros((num_targets, resolution, resolution)).index_add_(0, target, sampled * w[:, None, None])
    den = w.new_zeros(num_targets).index_add_(0, target, w)
    return num / den.clamp(min=1e-12)[:, None, None], frames


def nms_and_mask_voting(
    boxes: Tensor,
    scores: Tensor,
    classes: Tensor,
    mask_ids: Tensor,
    masks: Tensor,
    mask_boxes: Tensor,
    nms_thresh: float = 0.3,
    vote_iou_thresh: float = 0.5,
    topk: int = 100,
    resolution: int = 28,
    voter_threshold: Optional[float] = None,
) -> Tuple[Tensor, VotedMasks]:
    """
    Per-class NMS over one image's candidate instances, then mask voting for the kept ones.

    Args:
        boxes, scores, classes: N candidates (N x 4 XYXY class-specific boxes, N scores, N classes).
        mask_ids: N indices into ``masks``: a mask may back candidates of several classes.
        masks: M x m x m soft masks (probabilities), mask i covering ``mask_boxes[i]`` (M x 4).
        nms_thresh: box IoU of the per-class NMS (0.3 in the paper).
        vote_iou_thresh: box IoU with a kept instance at or above which a candidate of the same
            class votes for its mask (0.5 in the paper).
        topk: the most instances kept, highest scores first; negative keeps all.
        resolution: side of the voted masks.
        voter_threshold: None averages the voters' soft masks (the paper); a value binarizes each
            voter's mask at it first (the released code's 0.4).

    Returns:
        keep (K indices into the candidates, by decreasing score) and their K voted soft masks.
    """
    n = boxes.shape[0]
    _check_rows("boxes", boxes, n, (4,))
    for name, t in (("scores", scores), ("classes", classes), ("mask_ids", mask_ids)):
        _check_rows(name, t, n)
    if masks.dim() != 3 or mask_boxes.shape != (masks.shape[0], 4):
        raise ValueError(
            f"mask voting: masks must be M x m x m and mask_boxes M x 4, got {tuple(masks.shape)} "
            f"and {tuple(mask_boxes.shape)}"
        )
    if resolution < 1:
        raise ValueError(f"mask voting: resolution must be a positive int, got {resolution}")

    keep = batched_nms_topk(boxes, scores, classes, nms_thresh, topk)
    if keep.numel() == 0:
        return keep, VotedMasks(masks.new_zeros((0, resolution, resolution)), mask_boxes.new_zeros((0, 4)))
    # Box IoU only for the pairs of one class: with many classes, most pairs are not.
    target, voter = (classes[keep][:, None] == classes[None]).nonzero(as_tuple=True)
    iou = matched_pairwise_iou(Boxes(boxes[keep[target]]), Boxes(boxes[voter]))
    # A degenerate box has IoU 0 with itself; a kept instance always votes for itself.
    votes = (iou >= vote_iou_thresh) | (voter == keep[target])
    target, voter = target[votes], voter[votes]
    voted, frames = vote_masks(
        masks, mask_boxes, target, mask_ids[voter], scores[voter], keep.numel(), resolution, voter_threshold
    )
    return keep, VotedMasks(voted, frames)
