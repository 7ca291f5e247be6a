"""SCNet / Cascade Mask R-CNN (+ semantic) ROI heads on a controlled input: which samples and features
each head sees, and what the model outputs, against values computed apart from the heads' code."""
import pytest
import torch

from detectron2.layers import cat
from detectron2.modeling.roi_heads import select_foreground_proposals
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.structures import Boxes, pairwise_iou
from detectron2.utils.events import EventStorage

BOX_LOSSES = {f"loss_{n}_stage{k}" for n in ("cls", "box_reg") for k in range(3)}
MASK_STAGE_LOSSES = {"loss_mask_stage0", "loss_mask_stage1", "loss_mask_stage2"}


def run(heads, batch, seed=0):
    features, proposals, targets = batch
    g = torch.Generator().manual_seed(1)
    sem_seg = torch.randint(0, 2, (len(targets), *targets[0].image_size), generator=g)
    torch.manual_seed(seed)  # the RoI sampler draws at random
    with EventStorage():
        _, losses = heads(None, features, proposals, targets, sem_seg)
    return losses


def infer(heads, features, proposals):
    heads.eval()
    with torch.no_grad():
        instances, _ = heads(None, features, proposals)
    assert sum(len(x) for x in instances) > 0
    return instances


def stages_of(cascade_calls):
    """The CascadeStage records of the (only) call of ``_run_cascade``."""
    (call,) = cascade_calls
    return call.out[1]


@pytest.mark.parametrize(
    "method,overrides,expected",
    [
        ("scnet", {}, BOX_LOSSES | {"loss_mask", "loss_semantic_seg", "loss_glbctx"}),
        ("cascade_semantic", {}, BOX_LOSSES | MASK_STAGE_LOSSES | {"loss_semantic_seg"}),
        ("cascade_semantic", {"sample_consistent": True},
         BOX_LOSSES | MASK_STAGE_LOSSES | {"loss_semantic_seg"}),
        ("scnet", {"global_context_head": None, "feature_relays": None},
         BOX_LOSSES | {"loss_mask", "loss_semantic_seg"}),
        ("scnet", {"semantic_head": None}, BOX_LOSSES | {"loss_mask", "loss_glbctx"}),
    ],
)
def test_loss_names(method, overrides, expected, roi_heads_and_batch):
    heads, batch = roi_heads_and_batch(method, **overrides)
    losses = run(heads, batch)
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())


BOX_POOLS = ["from_mask_resolution", "direct"]


@pytest.mark.parametrize("method,semantic_box_pool", [("scnet", BOX_POOLS[0]),
                                                      ("cascade_semantic", BOX_POOLS[0]),
                                                      ("cascade_semantic", BOX_POOLS[1])])
def test_every_stages_box_head_sees_pooled_features_plus_image_context(method, semantic_box_pool,
                                                                      roi_heads_and_batch, spy, with_context):
    """SCNet: semantic embedding and global-context vector added to every box RoI feature; the
    Cascade baseline: the semantic embedding. The embedding is RoI-aligned at the mask resolution
    (14) and averaged down to 7 x 7 as released, or RoI-aligned at 7 x 7 ("direct")."""
    heads, batch = roi_heads_and_batch(method, semantic_box_pool=semantic_box_pool)
    features, _, _ = batch
    cascade = spy(heads, "_run_cascade")
    inputs = [spy(head, "forward") for head in heads.box_head]
    run(heads, batch)
    other_pool = ({*BOX_POOLS} - {semantic_box_pool}).pop()
    for k, stage in enumerate(stages_of(cascade)):
        boxes = [p.proposal_boxes for p in stage.proposals]
        (call,) = inputs[k]
        expected = with_context(heads, features, boxes, heads.box_pooler)
        assert torch.allclose(call.args[0], expected, atol=1e-5)
        plain = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
        assert not torch.allclose(call.args[0], plain, atol=1e-2)  # the context is not negligible
        other = with_context(heads, features, boxes, heads.box_pooler, other_pool)
        assert not torch.allclose(call.args[0], other, atol=1e-3)  # nor is how it is pooled


@pytest.mark.parametrize("method,overrides",
                         [("scnet", {}), ("cascade_semantic", {"sample_consistent": True})])
def test_mask_heads_are_trained_on_the_last_box_stages_positives(method, overrides, roi_heads_and_batch, spy,
                                                                 with_context, matched):
    """Sample consistency: the mask heads see exactly the last box stage's positive samples (IoU >= 0.7),
    with their matched GT's masks, on RoI features + image context (+ SCNet's relayed box features);
    SCNet's mask loss is beta = 1.75 times the mask loss of those samples."""
    heads, batch = roi_heads_and_batch(method, **overrides)
    features, _, targets = batch
    cascade = spy(heads, "_run_cascade")
    calls = [spy(head, "forward") for head in heads.mask_head]
    losses = run(heads, batch)
    last = stages_of(cascade)[-1]
    expected, is_fg = select_foreground_proposals(last.proposals, heads.num_classes)
    assert sum(len(p) for p in expected) > 0
    boxes = [p.proposal_boxes for p in expected]
    x = with_context(heads, features, boxes, heads.mask_pooler)
    if heads.feature_relays is not None:
        x = x + heads.feature_relays[0](last.box_features[cat(is_fg)])
    for head_calls in calls:
        ((got_x, instances),) = [c.args for c in head_calls]
        assert torch.allclose(got_x, x, atol=1e-5)
        for got, want, target, idx in zip(instances, expected, targets, matched(targets, expected)):
            assert torch.equal(got.proposal_boxes.tensor, want.proposal_boxes.tensor)
            assert torch.equal(got.gt_classes, target.gt_classes[idx])
            assert torch.equal(got.gt_masks.tensor, target.gt_masks.tensor[idx])
            assert (pairwise_iou(got.proposal_boxes, target.gt_boxes).max(dim=1).values >= 0.7).all()
    if method == "scnet":
        with EventStorage():
            loss = 1.75 * mask_rcnn_loss(heads.mask_head[0].layers(x), instances)
        assert losses["loss_mask"].item() == pytest.approx(loss.item(), rel=1e-5)


def test_cascade_baseline_mask_head_t_gets_stage_t_positives(roi_heads_and_batch, spy, matched):
    heads, batch = roi_heads_and_batch("cascade_semantic")
    _, _, targets = batch
    cascade = spy(heads, "_run_cascade")
    calls = [spy(head, "forward") for head in heads.mask_head]
    run(heads, batch)
    for t, head_calls in enumerate(calls):
        expected, _ = select_foreground_proposals(stages_of(cascade)[t].proposals, heads.num_classes)
        ((_, instances),) = [c.args for c in head_calls]
        for got, want, target, idx in zip(instances, expected, targets, matched(targets, expected)):
            assert torch.equal(got.proposal_boxes.tensor, want.proposal_boxes.tensor)
            assert torch.equal(got.gt_masks.tensor, target.gt_masks.tensor[idx])


def test_feature_relay_relays_only_the_positives(roi_heads_and_batch, spy):
    heads, batch = roi_heads_and_batch("scnet")
    cascade = spy(heads, "_run_cascade")
    relay_calls = spy(heads.feature_relays[0], "forward")
    run(heads, batch)
    last = stages_of(cascade)[-1]
    _, is_fg = select_foreground_proposals(last.proposals, heads.num_classes)
    is_fg = cat(is_fg)
    assert 0 < is_fg.sum() < len(is_fg)
    ((relayed,),) = [c.args for c in relay_calls]
    assert torch.equal(relayed, last.box_features[is_fg])


def _cascade_by_hand(heads, features, proposals, with_context):
    """The three box stages at test time, from the heads' weights only: each stage pools its input
    boxes (+ context), classifies and regresses them; its clipped boxes are the next stage's input.
    Returns each stage's class logits and the last stage's boxes."""
    sizes = [p.image_size for p in proposals]
    boxes = [p.proposal_boxes for p in proposals]
    logits = []
    for k in range(3):
        x = heads.box_head[k](with_context(heads, features, boxes, heads.box_pooler))
        predictor = heads.box_predictor[k]
        scores, deltas = predictor(x)
        counts = [len(b) for b in boxes]
        logits.append(scores.split(counts))
        regressed = predictor.box2box_transform.apply_deltas(deltas, cat([b.tensor for b in boxes]))
        boxes = []
        for b, size in zip(regressed.split(counts), sizes):
            b = Boxes(b)
            b.clip(size)
            boxes.append(b)
    return logits, [b.tensor for b in boxes]


def _averaged_scores(logits, score_averaging):
    """Per image: the softmax of the mean of the stages' logits (released), or the mean of their
    softmaxes (detectron2)."""
    if score_averaging == "logits":
        return [(sum(per_image) / 3).softmax(dim=1) for per_image in zip(*logits)]
    return [sum(x.softmax(dim=1) for x in per_image) / 3 for per_image in zip(*logits)]


@pytest.mark.parametrize("score_averaging", ["logits", "probabilities"])
def test_scores_are_the_mean_of_the_three_stage_classifiers_with_the_last_stages_boxes(score_averaging,
                                                                                       roi_heads_and_batch,
                                                                                       with_context):
    """Test-time scores: the three stage classifiers averaged, as released (their logits, then one
    softmax: the default) or as detectron2 (their probabilities); the last stage's boxes; score >
    0.001, NMS 0.5, 100 per image."""
    heads, (features, proposals, _) = roi_heads_and_batch("scnet", num_classes=3,
                                                          score_averaging=score_averaging)
    instances = infer(heads, features, proposals)
    predictor = heads.box_predictor[-1]
    test_settings = (predictor.test_score_thresh, predictor.test_nms_thresh, predictor.test_topk_per_image)
    assert test_settings == (0.001, 0.5, 100)
    with torch.no_grad():
        logits, boxes = _cascade_by_hand(heads, features, proposals, with_context)
    scores = _averaged_scores(logits, score_averaging)
    other = _averaged_scores(logits, ({"logits", "probabilities"} - {score_averaging}).pop())
    assert not torch.allclose(cat(scores), cat(other), atol=1e-3)  # the two averages differ here
    expected, _ = fast_rcnn_inference(boxes, scores, [p.image_size for p in proposals], 0.001, 0.5, 100)
    for got, want in zip(instances, expected):
        assert 0 < len(got) <= 100
        assert torch.allclose(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-4)
        assert torch.allclose(got.scores, want.scores, atol=1e-6)
        assert torch.equal(got.pred_classes, want.pred_classes)


def test_scnet_segments_the_final_detections(roi_heads_and_batch, with_context):
    """At test time the one mask head sees the final detections' RoI features + context + the relay
    of the last stage's box-head features recomputed on those detections."""
    heads, (features, proposals, _) = roi_heads_and_batch("scnet", num_classes=3)
    instances = infer(heads, features, proposals)
    boxes = [x.pred_boxes for x in instances]
    with torch.no_grad():
        last_box_features = heads.box_head[2](with_context(heads, features, boxes, heads.box_pooler))
        relayed = heads.feature_relays[0](last_box_features)
        x = with_context(heads, features, boxes, heads.mask_pooler) + relayed
        logits = heads.mask_head[0].layers(x)
    classes = cat([i.pred_classes for i in instances])
    expected = logits[torch.arange(len(classes)), classes].sigmoid()
    for inst in instances:
        assert set(inst.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_masks"}
        assert inst.pred_masks.shape[1:] == (1, 28, 28)
    assert torch.allclose(cat([i.pred_masks[:, 0] for i in instances]), expected, atol=1e-6)


def test_cascade_mask_ensemble_is_the_mean_of_the_heads_probabilities(roi_heads_and_batch, with_context):
    heads, (features, proposals, _) = roi_heads_and_batch("cascade_semantic", num_classes=2)
    instances = infer(heads, features, proposals)
    classes = cat([i.pred_classes for i in instances])
    with torch.no_grad():
        x = with_context(heads, features, [i.pred_boxes for i in instances], heads.mask_pooler)
        probs = [head.layers(x)[torch.arange(len(classes)), classes].sigmoid() for head in heads.mask_head]
    assert torch.allclose(cat([i.pred_masks[:, 0] for i in instances]), sum(probs) / 3, atol=1e-6)


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
        roi_heads_and_batch("cascade_semantic",
                            feature_relays=[{"_target_": "cascades.modeling.FeatureRelayHead"}])
    with pytest.raises(ValueError, match="stage_loss_weights"):
        roi_heads_and_batch("scnet", stage_loss_weights=[1.0])
    with pytest.raises(ValueError, match="score_averaging must be one of 'logits', 'probabilities', got 'm"):
        roi_heads_and_batch("scnet", score_averaging="mean")
    with pytest.raises(ValueError, match="semantic_box_pool must be one of 'from_mask_resolution', 'direct'"):
        roi_heads_and_batch("cascade_semantic", semantic_box_pool=7)
    with pytest.raises(ValueError, match="add_gt_every_stage must be True or False, got 'yes'"):
        roi_heads_and_batch("scnet", add_gt_every_stage="yes")


def test_released_pooling_of_the_semantic_embedding_needs_the_mask_branch(small_config):
    from detectron2.config import instantiate

    from cascades.modeling import SemanticCascadeROIHeads

    cfg = small_config("cascade_semantic").model.roi_heads
    cfg._target_ = SemanticCascadeROIHeads
    for key in ("mask_in_features", "mask_pooler", "mask_head", "sample_consistent"):
        cfg.pop(key)
    with pytest.raises(ValueError, match="semantic_box_pool='from_mask_resolution' pools at the mask pooler"):
        instantiate(cfg)
    cfg.semantic_box_pool = "direct"
    assert not instantiate(cfg).mask_on


@pytest.mark.parametrize("add_gt_every_stage", [True, False])
def test_later_stages_get_the_gt_boxes_instead_of_those_regressed_from_them(add_gt_every_stage,
                                                                           roi_heads_and_batch, spy):
    """As released (the default): stage t > 0's proposals are the boxes that stage t-1 regressed
    (clipped, non-empty), without those it regressed from GT boxes, followed by the GT boxes; with
    ``add_gt_every_stage=False`` (detectron2), all its regressed boxes and no GT boxes."""
    heads, batch = roi_heads_and_batch("scnet", add_gt_every_stage=add_gt_every_stage)
    assert not heads.sample_every_stage  # the small config: no subsampling, so the sets are exact
    _, _, targets = batch
    cascade = spy(heads, "_run_cascade")
    run(heads, batch)
    stages = stages_of(cascade)
    for t in (1, 2):
        prev = stages[t - 1]
        regressed = heads.box_predictor[t - 1].predict_boxes(prev.predictions, prev.proposals)
        for boxes, source, target, got in zip(regressed, prev.proposals, targets, stages[t].proposals):
            from_gt = (source.proposal_boxes.tensor[:, None] == target.gt_boxes.tensor[None]).all(-1).any(1)
            assert from_gt.any() == (add_gt_every_stage or t == 1)  # detectron2 adds them to stage 0
            if add_gt_every_stage:
                boxes = boxes[~from_gt]
            boxes = Boxes(boxes.detach())
            boxes.clip(target.image_size)
            expected = boxes[boxes.nonempty()].tensor
            if add_gt_every_stage:
                expected = torch.cat([expected, target.gt_boxes.tensor])
            assert torch.equal(got.proposal_boxes.tensor, expected)


@pytest.mark.parametrize("method", ["scnet", "htc"])
def test_mask_on_off_gives_the_boxes_only(method, roi_heads_and_batch, spy):
    """detectron2's GeneralizedRCNNWithTTA turns ``roi_heads.mask_on`` off to get the boxes, then
    segments its merged boxes with ``forward_with_given_boxes``: with mask_on off, the detections without
    running the mask branch; the same boxes as with it on."""
    heads, (features, proposals, _) = roi_heads_and_batch(method, num_classes=2)
    full = infer(heads, features, proposals)
    mask_calls = spy(heads, "_mask_inference")
    heads.mask_on = False
    boxes_only = infer(heads, features, proposals)
    assert heads.forward_with_given_boxes(features, boxes_only) is boxes_only
    assert mask_calls == []
    for got, want in zip(boxes_only, full):
        assert set(got.get_fields()) == {"pred_boxes", "scores", "pred_classes"}
        assert torch.equal(got.pred_boxes.tensor, want.pred_boxes.tensor)
        assert torch.equal(got.scores, want.scores) and torch.equal(got.pred_classes, want.pred_classes)
    heads.mask_on = True
    with torch.no_grad():
        segmented = heads.forward_with_given_boxes(features, boxes_only)
    for got, want in zip(segmented, full):
        assert torch.equal(got.pred_masks, want.pred_masks)


def test_detectron2s_test_time_augmentation_runs_the_mask_branch_on_the_merged_boxes_only(small_config,
                                                                                         monkeypatch):
    from detectron2.config import get_cfg, instantiate
    from detectron2.modeling import GeneralizedRCNNWithTTA

    torch.manual_seed(0)
    model = instantiate(small_config("scnet").model).eval()
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = model.roi_heads.num_classes
    cfg.TEST.AUG.MIN_SIZES, cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.FLIP = (96, 128), 200, True
    heads = model.roi_heads
    mask_on_at_calls, real = [], heads._mask_inference
    monkeypatch.setattr(heads, "_mask_inference",
                        lambda *a: (mask_on_at_calls.append(heads.mask_on), real(*a))[1])
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 120, 160), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        (output,) = GeneralizedRCNNWithTTA(cfg, model)([{"image": image, "height": 120, "width": 160}])
    assert mask_on_at_calls and all(mask_on_at_calls)  # never in the boxes-only passes
    instances = output["instances"]
    assert len(instances) > 0 and instances.pred_masks.shape[1:] == (120, 160)


def test_sample_every_stage_subsamples_later_stages_like_the_first(roi_heads_and_batch, matched):
    """With ``sample_every_stage`` a later stage keeps min(positives, 25% of 16) positives and fills
    up to 16 with negatives, like the first stage's sampler; without it, every box. Either way each
    box carries its matched GT's class, box and mask."""
    _, (_, _, targets) = roi_heads_and_batch("scnet")
    target = targets[0]
    g = torch.Generator().manual_seed(0)
    far = torch.tensor([[100.0, 0, 127, 10]]) + torch.rand(30, 4, generator=g)  # negatives at IoU 0.6
    boxes = torch.cat([target.gt_boxes.tensor.repeat(4, 1) + torch.rand(12, 4, generator=g), far])
    for every, expected in ((True, (4, 12)), (False, (12, 30))):
        heads, _ = roi_heads_and_batch("scnet", sample_every_stage=every, batch_size_per_image=16,
                                       add_gt_every_stage=False)
        (proposals,) = heads._create_proposals_from_boxes([boxes], [target.image_size])
        with EventStorage():
            (labelled,) = heads._match_and_label_boxes([proposals], 1, [target])
        positive = labelled.gt_classes < heads.num_classes
        assert (int(positive.sum()), int((~positive).sum())) == expected
        (idx,) = matched([target], [labelled])
        assert torch.equal(labelled.gt_classes[positive], target.gt_classes[idx][positive])
        assert torch.equal(labelled.gt_boxes.tensor, target.gt_boxes.tensor[idx])
        assert torch.equal(labelled.gt_masks.tensor, target.gt_masks.tensor[idx])
