"""Each MNC concept on hand-built inputs with exact expected values: the box graph from the RPN to stage 4
(end to end vs detached), the masking layer (Eq. 3), mask-level vs box-level labels and the two
classifiers, the box hand-over to stage 4, and the 5-stage cascade running the very same modules twice."""
import math

import pytest
import torch
import torch.nn.functional as F

from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from cascades.modeling.mnc_roi_heads import mask_level_labels
from mnc_helpers import SIZE, build, controlled_heads, default_batch, make_target, proposals, train_losses

COEF = torch.tensor([1.0, 2.0, 3.0, 4.0])  # L = sum(boxes * COEF): dL/dx0 = 1, dL/dy0 = 2, dL/dx1 = 3, dL/dy1 = 4


# -------------------------------------------------------------------------------------------------
# Stage 1 -> stage 2: the proposals are functions of the RPN's anchor deltas (Eq. 9's chain).
def _rpn_proposals(rpn, deltas, anchors, image_size=(SIZE, SIZE)):
    """The RPN's top proposals of one image from hand-set anchors and deltas (logits order them)."""
    logits = torch.arange(len(anchors), 0, -1, dtype=torch.float32)[None]
    return rpn.predict_proposals([Boxes(torch.tensor(anchors, dtype=torch.float32))], [logits], [deltas], [image_size])[0]


@pytest.mark.parametrize("clip", [None, 50.0])
def test_rpn_proposals_pass_the_box_gradient_to_the_anchor_deltas(clip):
    """A 20 x 20 anchor and zero deltas: x_c = a_c + dx * 20, w = exp(dw) * 20, so L = sum(box * COEF)
    gives dL/d(dx, dy, dw, dh) = ((1 + 3) * 20, (2 + 4) * 20, (3 - 1) / 2 * 20, (4 - 2) / 2 * 20). The
    released backward (clip 50 here, one image) clamps that to +-50, and zeroes a proposal that the
    border cuts (the second, and the third anchor moved right by 1 x its width) or whose anchor crosses
    the border (the fourth, moved inside by 1 x its width)."""
    rpn = build(rpn={"box_grad_clip": clip}).proposal_generator
    rpn.train()
    anchors = [[10, 10, 30, 30], [-5, 50, 15, 70], [60, 60, 100, 80], [-10, 90, 10, 110]]
    deltas = torch.tensor([[[0.0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]], requires_grad=True)
    p = _rpn_proposals(rpn, deltas, anchors)
    torch.testing.assert_close(p.proposal_boxes.tensor.detach(),
                               torch.tensor([[10.0, 10, 30, 30], [0, 50, 15, 70], [100, 60, 128, 80], [10, 90, 30, 110]]))
    (grad,) = torch.autograd.grad((p.proposal_boxes.tensor * COEF).sum(), deltas)
    if clip is None:
        # detectron2's clip to the image stops the gradient of the clipped coordinates only.
        expected = [[80.0, 120, 20, 20], [3 * 20, 120, 3 / 2 * 20, 20], [1 * 40, 6 * 20, -1 / 2 * 40, 20],
                    [80.0, 120, 20, 20]]
    else:
        expected = [[50.0, 50, 20, 20], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    torch.testing.assert_close(grad[0], torch.tensor(expected))


def test_rpn_clip_is_per_image_of_the_batch_and_spares_the_rpn_loss():
    """With 2 images the clip on each is halved (detectron2 averages the losses over the batch, Caffe
    over one image); the RPN's own regression loss reaches the deltas unclipped."""
    rpn = build(rpn={"box_grad_clip": 50.0}).proposal_generator
    rpn.train()
    anchors = Boxes(torch.tensor([[10.0, 10, 30, 30]]))
    deltas = torch.zeros(2, 1, 4, requires_grad=True)
    out = rpn.predict_proposals([anchors], [torch.ones(2, 1)], [deltas], [(SIZE, SIZE)] * 2)
    loss = sum((p.proposal_boxes.tensor * COEF).sum() for p in out)
    (grad,) = torch.autograd.grad(loss, deltas)
    torch.testing.assert_close(grad[:, 0], torch.tensor([[25.0, 25, 20, 20]] * 2))

    losses = {}
    for clip in (None, 1e-9):
        model = build(rpn={"box_grad_clip": clip}, box_grad_clip=clip)
        torch.manual_seed(3)
        losses[clip] = (model, train_losses(model, default_batch()))
    grads = {c: torch.autograd.grad(ls["loss_rpn_loc"], m.proposal_generator.rpn_head.anchor_deltas.weight)[0]
             for c, (m, ls) in losses.items()}
    torch.testing.assert_close(grads[None], grads[1e-9])


# -------------------------------------------------------------------------------------------------
# The sampled RoIs keep the graph of the proposals (end to end) or not (detached).
@pytest.mark.parametrize("end_to_end", [True, False])
def test_sampled_rois_keep_the_box_graph_only_end_to_end(end_to_end):
    heads = controlled_heads(end_to_end=end_to_end, batch_size_per_image=2, positive_fraction=0.5)
    heads.train()
    p = proposals([[0, 0, 10, 10], [40, 40, 60, 60], [0, 0, 9, 10]], requires_grad=True)
    with EventStorage():
        (sampled,) = heads._label_and_sample([p], [make_target([[0, 0, 10, 10]], [1])])
    assert sorted(sampled.gt_classes.tolist()) == [1, 2]  # one foreground (class 1), one background (2)
    if not end_to_end:
        assert not sampled.proposal_boxes.tensor.requires_grad
        return
    (grad,) = torch.autograd.grad((sampled.proposal_boxes.tensor * COEF).sum(), p.proposal_boxes.tensor)
    picked = [i for i in range(3) if grad[i].abs().sum() > 0]
    assert len(picked) == 2 and 1 in picked  # the background proposal and one of the two foreground ones
    torch.testing.assert_close(grad[picked], COEF.expand(2, 4))


def test_end_to_end_losses_reach_the_rpn_and_stage_3_regressor_only_end_to_end():
    """Through the whole model: stage 2's mask loss reaches the RPN's delta conv only through the proposal
    coordinates, stages 4/5 reach stage 3's regressor only through the regressed boxes; the masking
    layer passes stage 3's loss into stage 2 in both modes."""
    grads = {}
    for end_to_end in (True, False):
        model = build(end_to_end=end_to_end)
        losses = train_losses(model, default_batch())
        rpn_deltas = model.proposal_generator.rpn_head.anchor_deltas.weight
        regressor = model.roi_heads.box_predictor.bbox_pred.weight
        grads[end_to_end] = [
            torch.autograd.grad(losses[k], [w], retain_graph=True, allow_unused=True)[0]
            for k, w in (("loss_mask_stage0", rpn_deltas), ("loss_mask_stage1", regressor), ("loss_cls_stage1", regressor))
        ]
        (masking,) = torch.autograd.grad(losses["loss_cls_stage0"], [model.roi_heads.mask_head.predictor.weight])
        assert masking.abs().sum() > 0
    assert all(g is not None and g.abs().sum() > 0 for g in grads[True])
    assert all(g is None for g in grads[False])


# -------------------------------------------------------------------------------------------------
# Stage 3 -> stage 4: the box hand-over.
def _handover(heads, boxes_per_image, scores, deltas):
    props = [proposals(b, requires_grad=True) for b in boxes_per_image]
    return props, heads._next_proposals(props, scores, deltas)


def _handover_inputs():
    """Box 0 (20 x 20): class 1 scores highest among the classes (background higher still), its deltas
    move it right by 0.1 x its width. Box 1 (40 x 20): class 0, its deltas double its width."""
    scores = torch.tensor([[0.1, 2.0, 5.0], [3.0, 1.0, 0.0]])
    deltas = torch.tensor([[7.0, 7, 7, 7, 1, 0, 0, 0], [0, 0, 5 * math.log(2), 0, -3, -3, -3, -3]], requires_grad=True)
    return [[[10, 10, 30, 30], [40, 40, 80, 60]]], scores, deltas


def test_stage_3_boxes_regressed_by_the_top_class_become_stage_4_proposals():
    heads = controlled_heads(num_classes=2)
    heads.train()
    boxes, scores, deltas = _handover_inputs()
    (old,), (new,) = _handover(heads, boxes, scores, deltas)
    torch.testing.assert_close(new.proposal_boxes.tensor.detach(), torch.tensor([[12.0, 10, 32, 30], [20, 40, 100, 60]]))
    loss = (new.proposal_boxes.tensor * COEF).sum()
    grad_deltas, grad_boxes = torch.autograd.grad(loss, [deltas, old.proposal_boxes.tensor])
    # Only the chosen class's deltas: d/d(dx, dy) = (1 + 3) w / 10, (2 + 4) h / 10; d/d(dw, dh) = exp(d) w / 5, h / 5.
    torch.testing.assert_close(grad_deltas, torch.tensor([[0.0, 0, 0, 0, 8, 12, 4, 4], [16, 12, 16, 4, 0, 0, 0, 0]]))
    # x0' = 0.9 x0 + 0.1 x1, x1' = 1.1 x1 - 0.1 x0 (box 0); x0' = 1.5 x0 - 0.5 x1, x1' = 1.5 x1 - 0.5 x0 (box 1).
    torch.testing.assert_close(grad_boxes, torch.tensor([[0.6, 2, 3.4, 4], [0, 2, 4, 4]]))


@pytest.mark.parametrize("end_to_end", [True, False])
def test_stage_4_rois_keep_the_graph_of_stage_3_boxes_only_end_to_end(end_to_end):
    heads = controlled_heads(num_classes=2, end_to_end=end_to_end)
    heads.train()
    boxes, scores, deltas = _handover_inputs()
    _, new = _handover(heads, boxes, scores, deltas)
    (rois,) = heads._label_cascaded(new, [make_target([[12, 10, 32, 30]], [1])])
    assert rois.gt_classes.tolist() == [1, 2]  # box-level: the first overlaps the GT exactly
    assert rois.proposal_boxes.tensor.requires_grad == end_to_end


def test_released_bridge_clips_the_delta_gradient_only():
    """The released stage bridge: the gradient w.r.t. each chosen delta, after the width/height scaling,
    is clamped to clip / (images x Box2BoxTransform weight): 50 / (1 x (10, 10, 5, 5)) = (5, 5, 10, 10)
    here; a box the border cuts gets none; the gradient into stage 3's input boxes is not clipped."""
    boxes, scores, deltas = _handover_inputs()
    boxes = [boxes[0] + [[100, 10, 120, 30]]]
    scores = torch.cat([scores, torch.tensor([[0.0, 1.0, 0.0]])])
    deltas = torch.cat([deltas.detach(), torch.tensor([[0.0, 0, 0, 0, 10, 0, 0, 0]])]).requires_grad_()
    grads = {}
    for clip in (None, 50.0):
        heads = controlled_heads(num_classes=2, box_grad_clip=clip)
        heads.train()
        (old,), (new,) = _handover(heads, boxes, scores, deltas)
        grads[clip] = torch.autograd.grad((new.proposal_boxes.tensor * COEF).sum(), [deltas, old.proposal_boxes.tensor])
    torch.testing.assert_close(grads[50.0][0], torch.tensor([[0.0, 0, 0, 0, 5, 5, 4, 4], [5, 5, 10, 4, 0, 0, 0, 0], [0] * 8]))
    torch.testing.assert_close(grads[50.0][1], grads[None][1])
    heads.eval()
    with torch.no_grad():  # inference: no backward to shape
        heads._next_proposals([proposals(b) for b in boxes], scores, deltas)


# -------------------------------------------------------------------------------------------------
# The masking layer (Eq. 3).
def test_masking_layer_multiplies_the_roi_feature_by_the_stage_2_mask():
    """A 2 x 2 mask on a 2 x 2 RoI feature (box_feature_pool 1): the mask pathway sees feature x
    sigmoid(mask logit) per cell; the category loss's gradient reaches the mask logits through it."""
    heads = controlled_heads(box_feature_pool=1)
    seen = []
    heads.box_head.mask_pathway.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    logits = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    bias = heads.mask_head.predictor.bias
    with torch.no_grad():
        heads.mask_head.predictor.weight.zero_()
        bias.copy_(logits)
    features = torch.arange(16.0).view(1, 1, 4, 4)
    x = heads.pooler([features], [Boxes(torch.tensor([[0.0, 0, 4, 4]]))])  # 4 x 4 warp -> 2 x 2
    heads._run_pair({"f": features}, [proposals([[0, 0, 4, 4]])])
    mask = torch.sigmoid(logits)
    torch.testing.assert_close(seen[0], x * mask.view(1, 1, 2, 2))
    (grad,) = torch.autograd.grad(seen[0].sum(), bias)
    torch.testing.assert_close(grad, x.flatten().detach() * mask * (1 - mask))


# -------------------------------------------------------------------------------------------------
# Mask-level vs box-level labels; the two classifiers.
def test_mask_level_labels_by_hand():
    """Boxes 4 x 4 with 2 x 2 masks (a cell is 4 px). GT mask: the whole box, 16 px.
    Row 0 (class 0): 3 cells >= 0.4 -> IoU 12 / 16 = 0.75, stays. Row 1 (class 1): 1 cell -> 4 / 16,
    background. Row 3 (class 1): 2 cells, but its GT mask is 32 px, half outside the box -> 8 / 32,
    background. Row 2 is box-level background (label 2), row 4 ignored (-1): both unchanged."""
    box_labels = torch.tensor([0, 1, 2, 1, -1])
    probs = torch.tensor([[[0.4, 0.9], [0.45, 0.39]], [[0.9, 0.1], [0.1, 0.1]], [[0.9, 0.9], [0.0, 0.0]]])
    targets = torch.ones(3, 2, 2, dtype=torch.bool)
    boxes = torch.tensor([[0.0, 0, 4, 4]] * 3)
    areas = torch.tensor([16.0, 16.0, 32.0])
    labels = mask_level_labels(box_labels, probs, targets, boxes, areas, num_classes=2)
    assert labels.tolist() == [0, 2, 2, 2, -1]
    # Binarized at 0.5 row 0 keeps 1 cell: IoU 0.25; with iou_thresh 0.8 its 0.75 falls short: background.
    assert mask_level_labels(box_labels, probs, targets, boxes, areas, 2, threshold=0.5).tolist() == [2, 2, 2, 2, -1]
    assert mask_level_labels(box_labels, probs, targets, boxes, areas, 2, iou_thresh=0.8).tolist() == [2, 2, 2, 2, -1]
    assert mask_level_labels(box_labels, probs, targets, boxes, areas, 2, iou_thresh=0.75).tolist() == [0, 2, 2, 2, -1]


def _labelled_rois():
    """Two RoIs exactly on a class-1 GT whose mask is the left half of the box; one background RoI."""
    target = make_target([[0, 0, 16, 16]], [1])
    rois = proposals([[0, 0, 16, 16], [0, 0, 16, 16], [80, 80, 100, 100]])
    rois.gt_classes = torch.tensor([1, 1, 2])
    rois.gt_boxes = Boxes(target.gt_boxes.tensor.repeat(3, 1))
    rois.gt_masks = BitMasks(target.gt_masks.tensor.repeat(3, 1, 1))
    return rois


def test_the_two_classifiers_learn_mask_level_and_box_level_labels():
    """RoI 0's mask is the GT's (left half): mask-level positive. RoI 1's is the right half (IoU 0):
    background for the mask-level classifier, class 1 for the box-level one."""
    heads = controlled_heads(num_classes=2)
    rois = _labelled_rois()
    left = torch.tensor([[5.0, -5.0], [5.0, -5.0]])
    mask_logits = torch.stack([left, -left, torch.zeros(2, 2)])
    scores = torch.tensor([[0.5, 1.0, -1.0], [2.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    box_features = torch.randn(3, heads.box_level_classifier.in_features)
    with EventStorage():
        mask_level = heads._mask_level_targets([rois], mask_logits)
        losses = heads._pair_losses([rois], mask_logits, mask_level, box_features, scores, torch.zeros(3, 8), 0)
    torch.testing.assert_close(losses["loss_cls_stage0"], F.cross_entropy(scores, torch.tensor([1, 2, 2])))
    torch.testing.assert_close(losses["loss_cls_box_level_stage0"],
                               F.cross_entropy(heads.box_level_classifier(box_features), torch.tensor([1, 1, 2])))
    # The mask loss: both box-level positives, against the left half.
    target = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).expand(2, 2, 2)
    torch.testing.assert_close(losses["loss_mask_stage0"], F.binary_cross_entropy_with_logits(mask_logits[:2], target))


def test_inference_scores_come_from_the_mask_level_classifier_only():
    heads = controlled_heads(num_classes=2, test_num_stages=3)
    heads.eval()
    with torch.no_grad():
        heads.box_predictor.cls_score.weight.zero_()
        heads.box_predictor.cls_score.bias.copy_(torch.tensor([2.0, 0.0, 1.0]))
        heads.box_level_classifier.weight.zero_()
        heads.box_level_classifier.bias.copy_(torch.tensor([-100.0, 100.0, 0.0]))
        (r,) = heads._forward_test({"f": torch.rand(1, 1, 32, 32)}, [proposals([[4, 4, 20, 20]], size=32)])
    z = math.exp(2) + 1 + math.e
    assert r.pred_classes.tolist() == [0, 1]
    torch.testing.assert_close(r.scores, torch.tensor([math.exp(2) / z, 1 / z]))


# -------------------------------------------------------------------------------------------------
# 5 stages: stages 4 and 5 are stages 2 and 3 again, the very same modules, on stage 3's boxes.
@pytest.mark.parametrize("num_stages", [3, 5])
def test_stages_4_and_5_run_the_same_modules_on_stage_3_boxes(num_stages):
    """Each module runs once per (mask, category) pair; the second pair pools the stage-3 boxes moved by
    the top class's regressor (no GT appended with detectron2's sampling); no per-stage copies exist."""
    model = build(num_stages=num_stages)
    heads = model.roi_heads
    outputs = {"mask_head": [], "box_head": [], "box_predictor": []}
    for name, calls in outputs.items():
        getattr(heads, name).register_forward_hook(lambda m, args, out, calls=calls: calls.append(out))
    pooled = []
    heads.pooler.register_forward_pre_hook(lambda m, args: pooled.append([b.tensor for b in args[1]]))
    stage2_rois = []
    label_and_sample = heads._label_and_sample
    heads._label_and_sample = lambda p, t: stage2_rois.extend(label_and_sample(p, t)) or stage2_rois
    train_losses(model, default_batch())
    pairs = num_stages // 2
    assert [len(calls) for calls in outputs.values()] == [pairs] * 3 and len(pooled) == pairs
    if pairs == 2:
        with torch.no_grad():
            scores, deltas = outputs["box_predictor"][0]
            handed = heads._next_proposals(stage2_rois, scores, deltas)
        for got, want in zip(pooled[1], handed):
            torch.testing.assert_close(got, want.proposal_boxes.tensor)
    names = [n for n, _ in heads.named_parameters()]
    assert not any("stage" in n for n in names) and len({id(p) for p in heads.parameters()}) == len(names)
    # Inference runs test_num_stages (5: 300 + 300 candidates from stages 3 and 5), also after 3-stage training.
    outputs["box_predictor"].clear()
    model.eval()
    with torch.no_grad():
        model(default_batch())
    assert len(outputs["box_predictor"]) == 2
