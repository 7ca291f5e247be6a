"""MNC's per-class NMS + mask voting on hand-computed cases and against a per-instance loop."""
import pytest
import torch
import torch.nn.functional as F

from detectron2.layers import batched_nms
from detectron2.structures import Boxes, pairwise_iou

from cascades.modeling.mnc_mask_voting import nms_and_mask_voting


def _vote(boxes, scores, classes, masks, **kwargs):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores, classes = torch.tensor(scores, dtype=torch.float32), torch.tensor(classes, dtype=torch.int64)
    ids = torch.arange(len(boxes))
    keep, voted = nms_and_mask_voting(boxes, scores, classes, ids, masks, boxes, **{"resolution": 2, **kwargs})
    return keep, voted.masks, voted.frames.tensor


def test_same_box_votes_are_score_weighted():
    masks = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    keep, voted, frames = _vote([[0, 0, 10, 10]] * 2, [0.8, 0.2], [0, 0], masks)
    assert keep.tolist() == [0]
    torch.testing.assert_close(voted, torch.full((1, 2, 2), 0.8))
    torch.testing.assert_close(frames, torch.tensor([[0.0, 0, 10, 10]]))


def test_other_class_neither_suppressed_nor_voting():
    masks = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    keep, voted, _ = _vote([[0, 0, 10, 10]] * 2, [0.8, 0.2], [0, 1], masks)
    assert keep.tolist() == [0, 1]
    torch.testing.assert_close(voted, torch.stack([torch.ones(2, 2), torch.zeros(2, 2)]))


def test_suppressed_below_vote_iou_does_not_vote():
    # IoU 0.4: suppressed by NMS at 0.3, but below the voting IoU 0.5.
    boxes = [[0, 0, 10, 10], [0, 0, 10, 4]]
    masks = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    keep, voted, frames = _vote(boxes, [0.8, 0.7], [0, 0], masks)
    assert keep.tolist() == [0]
    torch.testing.assert_close(voted, torch.ones(1, 2, 2))
    torch.testing.assert_close(frames, torch.tensor([[0.0, 0, 10, 10]]))


def test_votes_are_averaged_in_the_union_of_the_boxes():
    # IoU([0,0,10,10], [0,0,10,20]) = 0.5: the taller box votes. Frame rows at y = 5 and 15: the
    # kept mask covers y = 5 only (1 there, 0 outside its box), the voter covers both.
    boxes = [[0, 0, 10, 10], [0, 0, 10, 20]]
    keep, voted, frames = _vote(boxes, [0.6, 0.4], [0, 0], torch.ones(2, 2, 2))
    assert keep.tolist() == [0]
    torch.testing.assert_close(frames, torch.tensor([[0.0, 0, 10, 20]]))
    torch.testing.assert_close(voted, torch.tensor([[[1.0, 1.0], [0.4, 0.4]]]))


def test_topk_and_empty_input():
    boxes = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]
    keep, voted, _ = _vote(boxes, [0.1, 0.9, 0.5], [0, 0, 0], torch.rand(3, 2, 2), topk=2)
    assert keep.tolist() == [1, 2] and voted.shape == (2, 2, 2)
    keep, voted, frames = _vote(torch.zeros(0, 4).tolist(), [], [], torch.zeros(0, 2, 2))
    assert keep.numel() == 0 and voted.shape == (0, 2, 2) and frames.shape == (0, 4)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="scores"):
        nms_and_mask_voting(torch.zeros(2, 4), torch.zeros(3), torch.zeros(2), torch.zeros(2).long(),
                            torch.zeros(2, 2, 2), torch.zeros(2, 4))


def _loop_reference(boxes, scores, classes, masks, nms_thresh, vote_thresh, res):
    """One kept instance at a time, pasting every voter into the union frame separately."""
    keep = batched_nms(boxes, scores, classes, nms_thresh)
    iou = pairwise_iou(Boxes(boxes), Boxes(boxes))
    out = []
    for k in keep.tolist():
        voters = [j for j in range(len(boxes)) if classes[j] == classes[k] and (iou[k, j] >= vote_thresh or j == k)]
        frame = torch.cat([boxes[voters, :2].min(0).values, boxes[voters, 2:].max(0).values])
        acc, wsum = torch.zeros(res, res), 0.0
        for j in voters:
            c = (torch.arange(res) + 0.5) / res
            xs = (frame[0] + c * (frame[2] - frame[0]) - boxes[j, 0]) / (boxes[j, 2] - boxes[j, 0]) * 2 - 1
            ys = (frame[1] + c * (frame[3] - frame[1]) - boxes[j, 1]) / (boxes[j, 3] - boxes[j, 1]) * 2 - 1
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
            acc += scores[j] * F.grid_sample(masks[j][None, None], grid, align_corners=False)[0, 0]
            wsum += scores[j]
        out.append(acc / wsum)
    return keep, torch.stack(out)


def test_vectorized_matches_a_loop_over_instances():
    g = torch.Generator().manual_seed(0)
    n = 60
    xy = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 30], dim=1)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 3, (n,), generator=g)
    masks = torch.rand(n, 7, 7, generator=g)
    keep, voted = nms_and_mask_voting(boxes, scores, classes, torch.arange(n), masks, boxes, 0.3, 0.5, -1, 9)
    voted = voted.masks
    ref_keep, ref_voted = _loop_reference(boxes, scores, classes, masks, 0.3, 0.5, 9)
    assert torch.equal(keep, ref_keep)
    torch.testing.assert_close(voted, ref_voted, rtol=1e-4, atol=1e-5)
    # Some kept instances really were voted on by others.
    assert (voted - masks[keep].mean() != 0).any()

