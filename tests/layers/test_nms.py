"""batched_nms_topk and the cascades' fast_rcnn_inference equal detectron2's batched NMS / inference."""
import pytest
import torch

from detectron2.layers import batched_nms
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference as d2_fast_rcnn_inference

from cascades.layers import batched_nms_topk
from cascades.modeling.fast_rcnn_inference import fast_rcnn_inference


def _candidates(num_boxes, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_boxes, 2, generator=g) * 500
    boxes = torch.cat([xy, xy + 20 + torch.rand(num_boxes, 2, generator=g) * 150], dim=1)
    rows, classes = torch.nonzero(torch.ones(num_boxes, num_classes, dtype=torch.bool), as_tuple=True)
    boxes = boxes[rows] + torch.randn(rows.numel(), 4, generator=g) * 3
    scores = torch.rand(rows.numel(), generator=g)  # distinct: the kept order is unique
    return boxes, scores, classes


@pytest.mark.parametrize("num_boxes,num_classes,topk", [(600, 80, 100), (300, 3, 100), (50, 2, 1000), (2000, 1, 5),
                                                         (40, 5, -1), (40, 5, 0)])
def test_topk_nms_on_a_prefix_equals_full_nms(num_boxes, num_classes, topk):
    """Exact, including when the first prefix keeps fewer than topk (few classes: it must grow) and
    when fewer than topk survive at all."""
    boxes, scores, classes = _candidates(num_boxes, num_classes, seed=num_boxes)
    full = batched_nms(boxes, scores, classes, 0.3)
    expected = full if topk < 0 else full[:topk]
    assert torch.equal(batched_nms_topk(boxes, scores, classes, 0.3, topk), expected)


def test_topk_nms_of_nothing():
    empty = torch.zeros(0, 4)
    for topk in (-1, 0, 100):
        assert batched_nms_topk(empty, empty[:, 0], empty[:, 0].long(), 0.5, topk).numel() == 0


@pytest.mark.parametrize("class_specific", [True, False])
def test_fast_rcnn_inference_equals_detectron2s(class_specific):
    g = torch.Generator().manual_seed(0)
    num_rois, num_classes, shape = 1000, 80, (480, 640)
    xy = torch.rand(num_rois, 2, generator=g) * 500
    base = torch.cat([xy, xy + 20 + torch.rand(num_rois, 2, generator=g) * 200], dim=1)  # some past the image
    reg = num_classes if class_specific else 1
    boxes = (base[:, None] + torch.randn(num_rois, reg, 4, generator=g) * 4).reshape(num_rois, reg * 4)
    scores = torch.softmax(torch.randn(num_rois, num_classes + 1, generator=g) * 2, dim=1)
    scores[7] = float("nan")  # an invalid row is dropped by both
    ours, rows = fast_rcnn_inference([boxes], [scores], [shape], 0.001, 0.5, 100)
    theirs, _ = d2_fast_rcnn_inference([boxes], [scores], [shape], 0.001, 0.5, 100)
    ours, theirs = ours[0], theirs[0]
    assert len(ours) == 100
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert torch.equal(ours.scores, theirs.scores) and torch.equal(ours.pred_classes, theirs.pred_classes)
    # The kept rows index the input (detectron2's index the rows left after dropping invalid ones).
    assert torch.equal(scores[rows[0], ours.pred_classes], ours.scores)
