"""SCNet / Cascade Mask R-CNN (+ semantic) ROI heads on a controlled input: losses, samples, outputs."""
import pytest
import torch

from detectron2.layers import cat
from detectron2.modeling.roi_heads import select_foreground_proposals
from detectron2.utils.events import EventStorage

from cascades.modeling import SCNetROIHeads
from cascades.modeling import semantic_cascade_roi_heads

BOX_LOSSES = {f"loss_{n}_stage{k}" for n in ("cls", "box_reg") for k in range(3)}


def run(heads, batch, seed=0):
    features, proposals, targets = batch
    sem_seg = torch.randint(0, 2, (len(targets), *targets[0].image_size), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(seed)  # the RoI sampler draws at random
    with EventStorage():
        _, losses = heads(None, features, proposals, targets, sem_seg)
    return losses


@pytest.mark.parametrize(
    "method,overrides,expected",
    [
        ("scnet", {}, BOX_LOSSES | {"loss_mask", "loss_semantic_seg", "loss_glbctx"}),
        ("cascade", {}, BOX_LOSSES | {"loss_mask_stage0", "loss_mask_stage1", "loss_mask_stage2", "loss_semantic_seg"}),
        ("cascade", {"sample_consistent": True}, BOX_LOSSES | {"loss_mask_stage0", "loss_mask_stage1", "loss_mask_stage2", "loss_semantic_seg"}),
        ("scnet", {"global_context_head": None, "feature_relays": None}, BOX_LOSSES | {"loss_mask", "loss_semantic_seg"}),
        ("scnet", {"semantic_head": None}, BOX_LOSSES | {"loss_mask", "loss_glbctx"}),
    ],
)
def test_loss_names(method, overrides, expected, roi_heads_and_batch):
    heads, batch = roi_heads_and_batch(method, **overrides)
    losses = run(heads, batch)
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())


def test_total_loss_is_the_papers_weighted_sum(roi_heads_and_batch):
    """L = sum_t alpha_t (L_cls + L_reg) + beta L_mask + gamma L_sem + lambda L_glbctx (Eq. 3, 4)."""
    heads, batch = roi_heads_and_batch("scnet")
    assert heads.stage_loss_weights == [1.0, 0.5, 0.25]
    assert heads.mask_loss_weights == [1.75]
    assert heads.semantic_head.loss_weight == 0.2
    assert heads.global_context_head.loss_weight == 3.0
    weighted = run(heads, batch)

    heads.stage_loss_weights = [1.0, 1.0, 1.0]
    heads.mask_loss_weights = [1.0]
    heads.semantic_head.loss_weight = 1.0
    heads.global_context_head.loss_weight = 1.0
    raw = run(heads, batch)

    expected = sum(
        a * (raw[f"loss_cls_stage{t}"] + raw[f"loss_box_reg_stage{t}"])
        for t, a in enumerate([1.0, 0.5, 0.25])
    )
    expected = expected + 1.75 * raw["loss_mask"] + 0.2 * raw["loss_semantic_seg"] + 3 * raw["loss_glbctx"]
    assert sum(weighted.values()).item() == pytest.approx(expected.item(), rel=1e-5)
    assert raw["loss_mask"].item() > 0 and raw["loss_box_reg_stage2"].item() > 0


def _record_stages(heads, monkeypatch):
    recorded = {}
    run_cascade = heads._run_cascade

    def spy(*args, **kwargs):
        recorded["stages"] = run_cascade(*args, **kwargs)
        return recorded["stages"]

    monkeypatch.setattr(heads, "_run_cascade", spy)
    return recorded


def _record_calls(module, monkeypatch):
    calls = []
    forward = module.forward

    def spy(*args, **kwargs):
        calls.append(args)
        return forward(*args, **kwargs)

    monkeypatch.setattr(module, "forward", spy)
    return calls


@pytest.mark.parametrize("method,overrides", [("scnet", {}), ("cascade", {"sample_consistent": True})])
def test_mask_heads_receive_exactly_the_last_stages_positives(method, overrides, roi_heads_and_batch, monkeypatch):
    heads, batch = roi_heads_and_batch(method, **overrides)
    stages = _record_stages(heads, monkeypatch)
    calls = [_record_calls(head, monkeypatch) for head in heads.mask_head]
    run(heads, batch)
    last = stages["stages"][-1].proposals
    expected, _ = select_foreground_proposals(last, heads.num_classes)
    assert sum(len(p) for p in expected) > 0
    for head_calls in calls:
        (x, instances), = head_calls
        assert x.shape[0] == sum(len(p) for p in expected)
        for got, want in zip(instances, expected):
            assert torch.equal(got.proposal_boxes.tensor, want.proposal_boxes.tensor)
            assert torch.equal(got.gt_classes, want.gt_classes)
            assert (got.gt_classes < heads.num_classes).all()
    # and these are stage 2's samples: every box overlaps its gt by >= the stage's IoU (0.7)
    from detectron2.structures import pairwise_iou

    for inst in expected:
        iou = pairwise_iou(inst.proposal_boxes, inst.gt_boxes).diagonal()
        assert (iou >= 0.7).all()


def test_cascade_baseline_mask_head_t_gets_stage_t_positives(roi_heads_and_batch, monkeypatch):
    heads, batch = roi_heads_and_batch("cascade")
    stages = _record_stages(heads, monkeypatch)
    calls = [_record_calls(head, monkeypatch) for head in heads.mask_head]
    run(heads, batch)
    for t, head_calls in enumerate(calls):
        expected, _ = select_foreground_proposals(stages["stages"][t].proposals, heads.num_classes)
        (_, instances), = head_calls
        for got, want in zip(instances, expected):
            assert torch.equal(got.proposal_boxes.tensor, want.proposal_boxes.tensor)


def test_feature_relay_only_for_positives(roi_heads_and_batch, monkeypatch):
    heads, batch = roi_heads_and_batch("scnet")
    stages = _record_stages(heads, monkeypatch)
    relay_calls = _record_calls(heads.feature_relays[0], monkeypatch)
    run(heads, batch)
    last = stages["stages"][-1]
    _, is_fg = select_foreground_proposals(last.proposals, heads.num_classes)
    is_fg = cat(is_fg)
    assert 0 < is_fg.sum() < len(is_fg)
    ((relayed,),) = relay_calls
    assert torch.equal(relayed, last.box_features[is_fg])


def test_inference_as_the_paper(roi_heads_and_batch, monkeypatch):
    heads, (features, proposals, _) = roi_heads_and_batch("scnet", num_classes=3)
    heads.eval()
    predictor = heads.box_predictor[-1]
    assert (predictor.test_score_thresh, predictor.test_nms_thresh, predictor.test_topk_per_image) == (0.001, 0.5, 100)
    stages = _record_stages(heads, monkeypatch)
    captured = {}
    real_inference = semantic_cascade_roi_heads.fast_rcnn_inference

    def spy(boxes, scores, *args):
        captured["boxes"], captured["scores"] = boxes, scores
        return real_inference(boxes, scores, *args)

    monkeypatch.setattr(semantic_cascade_roi_heads, "fast_rcnn_inference", spy)
    with torch.no_grad():
        instances, _ = heads(None, features, proposals)
    # class score = mean of the three stage classifiers; boxes = the last stage's
    per_stage = [heads.box_predictor[k].predict_probs(s.predictions, s.proposals) for k, s in enumerate(stages["stages"])]
    for i in range(len(proposals)):
        mean = sum(p[i] for p in per_stage) / 3
        assert torch.allclose(captured["scores"][i], mean)
        assert torch.equal(captured["boxes"][i], stages["stages"][-1].pred_boxes[i])
    for inst in instances:
        assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_masks"}
        assert 0 < len(inst) <= 100 and (inst.scores > 0.001).all()
        assert inst.pred_masks.shape[1:] == (1, 28, 28)
        assert ((inst.pred_masks >= 0) & (inst.pred_masks <= 1)).all()


def test_image_without_annotations_and_absent_classes(roi_heads_and_batch):
    heads, (features, proposals, targets) = roi_heads_and_batch("scnet", num_classes=5)
    targets[1] = targets[1][:0]  # second image: no objects
    losses = run(heads, (features, proposals, targets))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_invalid_configurations_are_rejected(roi_heads_and_batch):
    with pytest.raises(ValueError, match="sample consistency"):
        roi_heads_and_batch("scnet", sample_consistent=False)
    with pytest.raises(ValueError, match="feature_relays has 1"):
        roi_heads_and_batch("cascade", feature_relays=[{"_target_": "cascades.modeling.FeatureRelayHead"}])
    with pytest.raises(ValueError, match="stage_loss_weights"):
        roi_heads_and_batch("scnet", stage_loss_weights=[1.0])
    assert issubclass(SCNetROIHeads, semantic_cascade_roi_heads.SemanticCascadeROIHeads)


def test_sample_every_stage_subsamples_later_stages(roi_heads_and_batch, monkeypatch):
    heads, batch = roi_heads_and_batch("scnet", sample_every_stage=True, batch_size_per_image=16)
    stages = _record_stages(heads, monkeypatch)
    run(heads, batch)
    for stage in stages["stages"]:
        for proposals in stage.proposals:
            positives = (proposals.gt_classes < heads.num_classes).sum()
            assert len(proposals) <= 16 and positives <= 4
