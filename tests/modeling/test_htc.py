"""HTC ROI heads: interleaved box/mask stages, mask information flow, mask ensemble."""
import pytest
import torch

from detectron2.modeling.roi_heads import select_foreground_proposals
from detectron2.structures import pairwise_iou
from detectron2.utils.events import EventStorage

EXPECTED_LOSSES = {f"loss_{n}_stage{k}" for n in ("cls", "box_reg", "mask") for k in range(3)}


def train_step(heads, batch):
    features, proposals, targets = batch
    sem_seg = torch.zeros(len(targets), *targets[0].image_size, dtype=torch.long)
    torch.manual_seed(0)
    with EventStorage():
        return heads(None, features, proposals, targets, sem_seg)[1]


def test_loss_names_and_weights(roi_heads_and_batch):
    heads, batch = roi_heads_and_batch("htc")
    losses = train_step(heads, batch)
    assert set(losses) == EXPECTED_LOSSES | {"loss_semantic_seg"}
    assert heads.stage_loss_weights == [1.0, 0.5, 0.25]
    heads.stage_loss_weights = [1.0, 1.0, 1.0]
    raw = train_step(heads, batch)
    for t, alpha in enumerate([1.0, 0.5, 0.25]):
        assert losses[f"loss_mask_stage{t}"].item() == pytest.approx(alpha * raw[f"loss_mask_stage{t}"].item(), rel=1e-5)


def test_mask_stage_t_is_trained_on_box_stage_t_outputs(roi_heads_and_batch, monkeypatch):
    """Interleaved execution: mask stage t sees the boxes regressed by box stage t, labelled at
    stage t's IoU, and its head runs after the heads of stages < t (information flow)."""
    heads, batch = roi_heads_and_batch("htc")
    recorded = {"rois": [], "heads": []}
    run_cascade, mask_rois = heads._run_cascade, heads._mask_roi_features

    def record_cascade(*args, **kwargs):
        recorded["stages"] = run_cascade(*args, **kwargs)
        return recorded["stages"]

    def record_rois(features, boxes, context):
        recorded["rois"].append([b.tensor.clone() for b in boxes])
        return mask_rois(features, boxes, context)

    monkeypatch.setattr(heads, "_run_cascade", record_cascade)
    monkeypatch.setattr(heads, "_mask_roi_features", record_rois)
    for t, head in enumerate(heads.mask_head):
        real = head.mask_features
        monkeypatch.setattr(head, "mask_features", lambda x, prev=None, t=t, real=real: (recorded["heads"].append(t), real(x, prev))[1])
    train_step(heads, batch)

    assert recorded["heads"] == [0, 0, 1, 0, 1, 2]
    _, _, targets = batch
    for t, (stage, rois) in enumerate(zip(recorded["stages"], recorded["rois"])):
        iou_threshold = [0.5, 0.6, 0.7][t]
        for image, boxes in enumerate(rois):
            regressed = stage.pred_boxes[image].detach()
            # each RoI is one of stage t's regressed boxes (clipped to the image) ...
            size = targets[image].image_size
            clipped = regressed.clone()
            clipped[:, 0::2] = clipped[:, 0::2].clamp(0, size[1])
            clipped[:, 1::2] = clipped[:, 1::2].clamp(0, size[0])
            assert all((clipped == b).all(dim=1).any() for b in boxes)
            # ... that overlaps a ground truth at stage t's IoU
            assert (pairwise_iou(targets[image].gt_boxes, type(targets[image].gt_boxes)(boxes)).max(0).values >= iou_threshold).all()
        assert sum(len(b) for b in rois) > 0


def test_inference_averages_the_chained_heads(roi_heads_and_batch):
    heads, (features, proposals, _) = roi_heads_and_batch("htc", num_classes=2)
    heads.eval()
    with torch.no_grad():
        instances, _ = heads(None, features, proposals)
        context, _ = heads._image_context(features)
        x = heads._mask_roi_features(features, [i.pred_boxes for i in instances], context)
        prev, probs = None, []
        for head in heads.mask_head:
            prev = head.mask_features(x, prev)
            logits = head.predict(prev)
            classes = torch.cat([i.pred_classes for i in instances])
            probs.append(logits[torch.arange(len(classes)), classes].sigmoid())
    expected = sum(probs) / 3
    got = torch.cat([i.pred_masks[:, 0] for i in instances])
    assert len(got) > 0
    assert torch.allclose(got, expected, atol=1e-6)
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
