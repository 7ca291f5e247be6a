"""MNC end to end: stage shapes, losses, detectron2-standard outputs, box_grad_scale, shared stages, degenerate
input, C4 backbones, bad arguments (the concepts with exact values: test_mnc_concepts.py)."""
import copy

import numpy as np
import pytest
import torch

import detectron2.data.transforms as T
from detectron2.config import get_cfg, instantiate
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from cascades.layers import RoIWarpPooler
from cascades.modeling.mnc import MNC, MNCROIHeads
from mnc_helpers import SIZE, STAGE_LOSSES, build, default_batch, make_batch, make_target, tiny_fpn_config, train_losses


def test_loss_names_and_finiteness_5_and_3_stages():
    losses = train_losses(build(), default_batch())
    expected = {n.format(k) for n in STAGE_LOSSES for k in (0, 1)} | {"loss_rpn_cls", "loss_rpn_loc"}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask_stage0"] > 0 and losses["loss_cls_stage1"] > 0
    losses = train_losses(build(num_stages=3), default_batch())
    assert set(losses) == {n.format(0) for n in STAGE_LOSSES} | {"loss_rpn_cls", "loss_rpn_loc"}


def test_per_stage_output_shapes():
    model = build(num_classes=3)
    model.eval()
    heads = model.roi_heads
    features = {f"p{k}": torch.randn(2, 32, SIZE // 2**k, SIZE // 2**k) for k in (2, 3, 4, 5)}
    proposals = []
    for n in (5, 7):
        p = Instances((SIZE, SIZE))
        xy = torch.rand(n, 2) * 60
        p.proposal_boxes = Boxes(torch.cat([xy, xy + 20 + torch.rand(n, 2) * 40], 1))
        proposals.append(p)
    with torch.no_grad():
        mask_logits, box_features, scores, deltas = heads._run_pair(features, proposals)
        assert mask_logits.shape == (12, 28, 28)  # stage 2: one class-agnostic 28 x 28 mask per RoI
        assert box_features.shape == (12, 128)  # stage 3: two pathways of fc 64
        assert scores.shape == (12, 4) and deltas.shape == (12, 12)  # (N+1)-way, class-wise boxes
        assert heads.pooler.output_size == (14, 14)  # 28 x 28 warp, 2 x 2 max
        nxt = heads._next_proposals(proposals, scores, deltas)  # stage 4's input
        assert [len(p) for p in nxt] == [5, 7]
        results = heads._forward_test(features, proposals)
    for r in results:
        assert len(r) <= 100 and r.pred_voted_masks.masks.shape == (len(r), 28, 28) and r.pred_classes.max() < 3


def test_inference_outputs_detectron2_instances():
    model = build()
    model.eval()
    batch = default_batch()
    batch[0]["height"], batch[0]["width"] = 200, 300  # rescaled output, as the test loader asks
    with torch.no_grad():
        out = model(batch)
    r = out[0]["instances"]
    assert r.image_size == (200, 300)
    assert set(r.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_masks"}
    assert r.pred_masks.shape == (len(r), 200, 300) and r.pred_masks.dtype == torch.bool
    assert len(r) > 0 and (r.scores[:-1] >= r.scores[1:]).all()


def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def test_box_grad_scale_scales_only_the_box_coordinate_gradient():
    """Stage 2's mask loss reaches the RPN's deltas only through the box coordinates: scaled by the
    factor. Its gradient into the mask head does not pass through them: unchanged."""
    grads = {}
    for scale in (1.0, 0.25):
        model = build(box_grad_scale=scale)
        torch.manual_seed(1)  # the same RoI sampling in both runs
        losses = train_losses(model, default_batch())
        heads, rpn = model.roi_heads, model.proposal_generator.rpn_head
        grads[scale] = _grads(losses["loss_mask_stage0"], [rpn.anchor_deltas.weight, heads.mask_head.predictor.weight])
    (rpn_1, head_1), (rpn_q, head_q) = grads[1.0], grads[0.25]
    assert rpn_1.abs().sum() > 0
    torch.testing.assert_close(rpn_q, 0.25 * rpn_1, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(head_q, head_1)
    with pytest.raises(ValueError, match="box_grad_scale must be a finite number >= 0"):
        build(box_grad_scale=-1.0)


def test_stages_4_5_share_the_parameters_of_stages_2_3():
    # Boxes detached: stages 4/5's losses then reach these weights only by sharing them (end to end they
    # would also reach stage 2's mask head through stage 3's boxes).
    model = build(end_to_end=False)
    losses = train_losses(model, default_batch())
    heads = model.roi_heads
    shared = [heads.mask_head.predictor.weight, heads.box_head.mask_pathway.fc1.weight, heads.box_predictor.cls_score.weight]
    for k in (0, 1):
        grads = _grads(losses[f"loss_mask_stage{k}"] + losses[f"loss_cls_stage{k}"], shared)
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # One set of modules: no per-stage copies anywhere in the heads.
    names = [n for n, _ in heads.named_parameters()]
    assert not any("stage" in n for n in names)
    assert len({id(p) for p in heads.parameters()}) == len(names)


def test_images_without_annotations_degenerate_and_out_of_image_boxes():
    empty = make_target([], [])
    odd = make_target([[40, 40, 40, 80], [100, 100, 300, 400], [-20, -10, 30, 50]], [0, 1, 0])
    odd.gt_boxes.clip((SIZE, SIZE))  # what the mapper does; the zero-width box stays degenerate
    model = build()
    losses = train_losses(model, make_batch([empty, odd]))
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    losses = train_losses(model, make_batch([empty, empty]))
    assert losses["loss_mask_stage0"] == 0 and torch.isfinite(losses["loss_cls_stage1"])
    sum(losses.values()).backward()


def test_zero_proposals_train_and_test():
    model = build()
    heads = model.roi_heads
    features = {f"p{k}": torch.randn(2, 32, SIZE // 2**k, SIZE // 2**k) for k in (2, 3, 4, 5)}
    empty = Instances((SIZE, SIZE))
    empty.proposal_boxes = Boxes(torch.zeros(0, 4))
    empty.objectness_logits = torch.zeros(0)
    heads.eval()
    with torch.no_grad():
        results = heads._forward_test(features, [empty, empty])
    assert [len(r) for r in results] == [0, 0]
    heads.train()
    targets = [make_target([[10, 20, 70, 90]], [0]), make_target([], [])]
    with EventStorage():
        losses = heads._forward_train(features, [empty, empty], targets)  # only the appended GT
    assert all(torch.isfinite(v) for v in losses.values())
    # Through the whole model: NMS leaves nothing when the RPN keeps no boxes at test time.
    model.proposal_generator.post_nms_topk = {True: 40, False: 0}
    model.eval()
    with torch.no_grad():
        out = model(default_batch())
    assert [len(o["instances"]) for o in out] == [0, 0]
    assert out[0]["instances"].pred_masks.shape == (0, SIZE, SIZE)


def test_crowd_annotations_are_dropped_by_the_mapper(monkeypatch):
    mapper = DatasetMapper(is_train=True, augmentations=[T.ResizeShortestEdge(SIZE, SIZE)], image_format="BGR",
                           use_instance_mask=True, instance_mask_format="bitmask")
    image = np.random.RandomState(0).randint(0, 255, (SIZE, SIZE, 3)).astype(np.uint8)
    poly = [[10.0, 10.0, 60.0, 10.0, 60.0, 60.0, 10.0, 60.0]]
    annos = [
        {"bbox": [10, 10, 50, 50], "bbox_mode": 1, "category_id": 0, "segmentation": poly, "iscrowd": 0},
        {"bbox": [0, 0, 128, 128], "bbox_mode": 1, "category_id": 1, "segmentation": poly, "iscrowd": 1},
    ]
    # The mapper reads the image from disk; hand it the array instead.
    monkeypatch.setattr(utils, "read_image", lambda *args, **kwargs: image)
    d = mapper({"file_name": "x.jpg", "height": SIZE, "width": SIZE, "image_id": 0, "annotations": annos})
    assert len(d["instances"]) == 1
    losses = train_losses(build(), [d, d])
    assert all(torch.isfinite(v) for v in losses.values())


def test_c4_backbone_with_roi_warp_pooler():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    torch.manual_seed(0)
    backbone = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    model_cfg = tiny_fpn_config()
    model_cfg.backbone = backbone
    model_cfg.proposal_generator.in_features = ["res4"]
    model_cfg.proposal_generator.head.in_channels = 256
    model_cfg.proposal_generator.anchor_generator.sizes = [[32, 64, 128]]
    model_cfg.proposal_generator.anchor_generator.strides = [16]
    model_cfg.proposal_generator.head.num_anchors = 9
    heads = model_cfg.roi_heads
    heads.in_features = ["res4"]
    heads.pooler.scales = (1.0 / 16,)
    heads.mask_head.input_shape.channels = 256
    heads.box_head.input_shape.channels = 256
    model = instantiate(model_cfg)
    assert isinstance(model, MNC) and isinstance(model.roi_heads, MNCROIHeads)
    assert isinstance(model.roi_heads.pooler, RoIWarpPooler)
    losses = train_losses(model, default_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        assert "pred_masks" in model(copy.deepcopy(default_batch()))[0]["instances"].get_fields()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="num_stages"):
        build(num_stages=4)
    model = build()
    with pytest.raises(ValueError, match="targets"):
        model.roi_heads.train()
        model.roi_heads(None, {}, [], None)
    with pytest.raises(ValueError, match="masks must be R x h x w"):
        model.roi_heads.box_head(torch.zeros(2, 32, 7, 7), torch.zeros(2, 14, 14))
