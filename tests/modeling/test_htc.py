"""HTC ROI heads: interleaved box/mask stages, mask information flow, mask ensemble, against values
computed apart from the heads' code."""
import pytest
import torch

from detectron2.layers import cat
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

EXPECTED_LOSSES = {f"loss_{n}_stage{k}" for n in ("cls", "box_reg", "mask") for k in range(3)}
STAGE_IOUS = [0.5, 0.6, 0.7]


def train_step(heads, batch):
    features, proposals, targets = batch
    sem_seg = torch.zeros(len(targets), *targets[0].image_size, dtype=torch.long)
    torch.manual_seed(0)
    with EventStorage():
        return heads(None, features, proposals, targets, sem_seg)[1]


def test_loss_names(roi_heads_and_batch):
    heads, batch = roi_heads_and_batch("htc")
    assert set(train_step(heads, batch)) == EXPECTED_LOSSES | {"loss_semantic_seg"}


def _regressed_positives(heads, stage, t, targets, add_gt):
    """Box stage t's regressed boxes, clipped, non-empty (with ``add_gt``: without those regressed from
    GT boxes, and followed by the GT boxes), that overlap a GT by >= stage t's IoU, in order; and the
    GT each one overlaps most."""
    regressed = heads.box_predictor[t].predict_boxes(stage.predictions, stage.proposals)
    positives = []
    for boxes, source, target in zip(regressed, stage.proposals, targets):
        if add_gt:
            from_gt = (source.proposal_boxes.tensor[:, None] == target.gt_boxes.tensor[None]).all(-1).any(1)
            assert from_gt.any()
            boxes = boxes[~from_gt]
        boxes = Boxes(boxes.detach())
        boxes.clip(target.image_size)
        boxes = boxes[boxes.nonempty()]
        if add_gt:
            boxes = Boxes.cat([boxes, target.gt_boxes])
        best = pairwise_iou(target.gt_boxes, boxes).max(dim=0)
        keep = best.values >= STAGE_IOUS[t]
        positives.append((boxes[keep], best.indices[keep]))
    return positives


@pytest.mark.parametrize("add_gt_every_stage", [True, False])
def test_mask_stage_t_trains_on_box_stage_t_regressed_boxes_with_information_flow(add_gt_every_stage,
                                                                                 roi_heads_and_batch, spy,
                                                                                 with_context, monkeypatch):
    """Interleaved execution (the SCNet paper's Eq. 2): mask stage t's samples are the boxes regressed by
    box stage t, re-labelled at stage t's IoU, with their GT masks (as released, with the GT boxes in
    place of the boxes regressed from them); its features run through the heads of stages <= t in chain
    (information flow); its loss is alpha_t times the mask loss."""
    heads, batch = roi_heads_and_batch("htc", add_gt_every_stage=add_gt_every_stage)
    with torch.no_grad():  # regressions large enough that the regressed boxes are not their inputs
        for predictor in heads.box_predictor:
            predictor.bbox_pred.weight.mul_(100)
    features, _, targets = batch
    cascade = spy(heads, "_run_cascade")
    order = []
    for t, head in enumerate(heads.mask_head):
        real = head.mask_features
        monkeypatch.setattr(head, "mask_features",
                            lambda x, prev=None, t=t, real=real: (order.append(t), real(x, prev))[1])
    losses = train_step(heads, batch)
    assert order == [0, 0, 1, 0, 1, 2]

    ((_, stages),) = [c.out for c in cascade]
    for t, stage in enumerate(stages):
        regressed = heads.box_predictor[t].predict_boxes(stage.predictions, stage.proposals)
        shift = (cat(regressed) - cat([p.proposal_boxes.tensor for p in stage.proposals])).abs()
        assert shift.mean() > 1.0  # pixels
        positives = _regressed_positives(heads, stage, t, targets, add_gt_every_stage)
        assert sum(len(b) for b, _ in positives) > 0
        x = with_context(heads, features, [b for b, _ in positives], heads.mask_pooler)
        prev = None
        with torch.no_grad():
            for head in heads.mask_head[: t + 1]:
                prev = head.mask_features(x, prev)
            logits = heads.mask_head[t].predict(prev)
        instances = []
        for (boxes, gt), target in zip(positives, targets):
            inst = Instances(target.image_size, proposal_boxes=boxes, gt_classes=target.gt_classes[gt])
            inst.gt_masks = target.gt_masks[gt]
            instances.append(inst)
        with EventStorage():
            expected = [1.0, 0.5, 0.25][t] * mask_rcnn_loss(logits, instances)
        assert losses[f"loss_mask_stage{t}"].item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("mask_ensemble", [True, False])
def test_inference_averages_the_chained_heads(mask_ensemble, roi_heads_and_batch, with_context):
    """Mask ensemble over the chained heads on the final detections: the mean of their probabilities
    (the papers, mmdetection 2); without it the last head's (mmdetection 3.x)."""
    heads, (features, proposals, _) = roi_heads_and_batch("htc", num_classes=2, mask_ensemble=mask_ensemble)
    heads.eval()
    with torch.no_grad():
        instances, _ = heads(None, features, proposals)
        x = with_context(heads, features, [i.pred_boxes for i in instances], heads.mask_pooler)
        classes = torch.cat([i.pred_classes for i in instances])
        prev, probs = None, []
        for head in heads.mask_head:
            prev = head.mask_features(x, prev)
            probs.append(head.predict(prev)[torch.arange(len(classes)), classes].sigmoid())
    got = torch.cat([i.pred_masks[:, 0] for i in instances])
    assert len(got) > 0
    assert torch.allclose(got, sum(probs) / 3 if mask_ensemble else probs[-1], atol=1e-6)
    assert not torch.allclose(sum(probs) / 3, probs[-1], atol=1e-3)
    for inst in instances:
        assert len(inst) <= 100 and (inst.scores > 0.001).all()


def test_htc_needs_one_flowing_head_per_stage(small_config):
    from detectron2.config import instantiate

    cfg = small_config("htc")
    cfg.model.roi_heads.mask_head[0].with_prev_stage = True
    with pytest.raises(ValueError, match="with_prev_stage"):
        instantiate(cfg.model.roi_heads)
    cfg.model.roi_heads.mask_head = cfg.model.roi_heads.mask_head[:2]
    with pytest.raises(ValueError, match="one per stage"):
        instantiate(cfg.model.roi_heads)
    cfg = small_config("htc")
    cfg.model.roi_heads.mask_ensemble = "last"
    with pytest.raises(ValueError, match="mask_ensemble must be True or False, got 'last'"):
        instantiate(cfg.model.roi_heads)
