"""MNC as the authors' released code trains and tests it, each an option: its RoI sampling (foreground
fraction 0.3, background IoU bands, GT boxes appended to stages 4/5), NMS and mask voting, Fast R-CNN's
smooth L1, the loss weights; the paper-setting configs use them; bad values fail at construction."""
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import build_model
from detectron2.modeling.matcher import Matcher
from detectron2.structures import BitMasks, Boxes
from detectron2.utils.events import EventStorage

from cascades.modeling.mnc import MNC
from cascades.modeling.mnc_mask_voting import nms_and_mask_voting
from cascades.modeling.mnc_roi_heads import sample_released
from mnc_helpers import (REPO, build, controlled_heads, default_batch, make_target, proposals, train_losses,
                         yacs_mnc_config)

RELEASED_MATCHER = Matcher([0.1, 0.5], [-1, 0, 1], allow_low_quality_matches=False)


# -------------------------------------------------------------------------------------------------
# Sampling
@pytest.mark.parametrize(
    "counts, expected",
    [
        # (foreground, IoU [0.1, 0.5), IoU [0, 0.1)) available -> sampled, for 64 RoIs at fraction 0.3:
        ((30, 100, 100), (19, 38, 7)),  # round(19.2); of the 45 left, round(38.25) and round(6.75)
        ((5, 100, 100), (5, 50, 9)),  # of the 59 left, round(50.15) and round(8.85)
        ((5, 10, 3), (5, 10, 3)),  # short bands are not filled up from the others
    ],
)
def test_released_sampler_counts(counts, expected):
    labels = torch.cat([torch.full((n,), label) for n, label in zip(counts, (1, 0, -1))])
    torch.manual_seed(0)
    idx = sample_released(labels, 64, 0.3)
    assert tuple((labels[idx] == label).sum().item() for label in (1, 0, -1)) == expected
    assert idx.unique().numel() == idx.numel()


def test_released_sampling_labels_both_background_bands_background():
    """IoU with the GT [0, 0, 10, 10]: 1.0 (foreground), 0.25 (high band), 0.0 (low band)."""
    heads = controlled_heads(sampling="released", proposal_matcher=RELEASED_MATCHER, batch_size_per_image=10,
                             positive_fraction=0.3)
    heads.train()
    p = proposals([[0, 0, 10, 10], [0, 0, 10, 2.5], [50, 50, 60, 60]])
    with EventStorage():
        (rois,) = heads._label_and_sample([p], [make_target([[0, 0, 10, 10]], [1])])
    # 1 foreground of round(3) possible; of 9 left, round(7.65) = 8 and round(1.35) = 1: all that exist.
    assert sorted(zip(rois.proposal_boxes.tensor[:, 3].tolist(), rois.gt_classes.tolist())) == [(2.5, 2), (10, 1), (60, 2)]


@pytest.mark.parametrize("sampling", ["detectron2", "released"])
def test_gt_boxes_are_appended_to_stage_4_rois_only_as_released(sampling):
    matcher = RELEASED_MATCHER if sampling == "released" else Matcher([0.5], [0, 1], allow_low_quality_matches=False)
    heads = controlled_heads(sampling=sampling, proposal_matcher=matcher)
    p = proposals([[0, 0, 9, 10], [60, 60, 70, 70]])
    (rois,) = heads._label_cascaded([p], [make_target([[0, 0, 10, 10], [30, 30, 40, 40]], [1, 0])])
    boxes = rois.proposal_boxes.tensor.tolist()
    if sampling == "released":
        assert boxes == [[0, 0, 9, 10], [60, 60, 70, 70], [0, 0, 10, 10], [30, 30, 40, 40]]
        assert rois.gt_classes.tolist() == [1, 2, 1, 0]
    else:
        assert boxes == [[0, 0, 9, 10], [60, 60, 70, 70]] and rois.gt_classes.tolist() == [1, 2]


def test_released_sampling_needs_the_three_band_matcher():
    with pytest.raises(ValueError, match=r"sampling='released' needs proposal_matcher=Matcher\(\[0.1, 0.5\]"):
        controlled_heads(sampling="released")


@pytest.mark.parametrize("masking_grad", ["all", "mask_level_positives"])
def test_masking_layer_gradient_from_mask_level_positives_only_as_released(masking_grad):
    """RoI 0 sits on a class-1 GT and predicts its mask (mask-level positive), RoI 1 is background. The
    masks that stage 3 multiplies pass d(sigmoid) to the logits, for RoI 0 only in the released way."""
    heads = controlled_heads(num_classes=2, masking_grad=masking_grad, num_stages=3)
    heads.train()
    with torch.no_grad():
        heads.mask_head.predictor.weight.zero_()
        heads.mask_head.predictor.bias.copy_(torch.tensor([5.0, -5.0, 5.0, -5.0]))  # the left half
    seen = {}
    masks, categories = heads._masks, heads._categories

    def recording_masks(features, rois):
        boxes, x, seen["logits"] = masks(features, rois)
        return boxes, x, seen["logits"]

    heads._masks = recording_masks
    heads._categories = lambda f, b, x, m: seen.update(masks=m) or categories(f, b, x, m)
    with EventStorage():
        heads._forward_train({"f": torch.rand(1, 1, 128, 128)}, [proposals([[0, 0, 16, 16], [80, 80, 100, 100]])],
                             [make_target([[0, 0, 16, 16]], [1])])
    (grad,) = torch.autograd.grad(seen["masks"].sum(), seen["logits"])
    s = torch.sigmoid(seen["logits"].detach())
    expected = s * (1 - s)
    if masking_grad == "mask_level_positives":
        expected[1] = 0
    torch.testing.assert_close(grad, expected)


# -------------------------------------------------------------------------------------------------
# NMS and mask voting
def _two_candidates(vote_mode):
    """Two candidates of one class predicted in the same box [0, 0, 10, 10] (masks 0.5 and 0.3
    everywhere, scores 0.9 and 0.6), whose class-regressed boxes do not overlap."""
    heads = controlled_heads(num_classes=1, vote_mode=vote_mode)
    class_boxes = torch.tensor([[[0.0, 0, 10, 10]], [[50, 50, 60, 60]]])
    probs = torch.tensor([[0.9], [0.6]])
    masks = torch.stack([torch.full((2, 2), 0.5), torch.full((2, 2), 0.3)])
    return heads._instances((64, 64), class_boxes, probs, masks, torch.tensor([[0.0, 0, 10, 10]] * 2))


def test_paper_voting_nms_on_the_regressed_boxes_soft_masks():
    r = _two_candidates("paper")
    torch.testing.assert_close(r.pred_boxes.tensor, torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]))
    torch.testing.assert_close(r.pred_voted_masks.masks, torch.stack([torch.full((2, 2), 0.5), torch.full((2, 2), 0.3)]))


def test_released_voting_nms_on_the_mask_boxes_binarized_voters():
    """Released: one NMS survivor; both vote, binarized at 0.4 first: (0.9 x 1 + 0.6 x 0) / 1.5 = 0.6."""
    r = _two_candidates("released")
    torch.testing.assert_close(r.pred_boxes.tensor, torch.tensor([[0.0, 0, 10, 10]]))
    torch.testing.assert_close(r.scores, torch.tensor([0.9]))
    torch.testing.assert_close(r.pred_voted_masks.masks, torch.full((1, 2, 2), 0.6))
    torch.testing.assert_close(r.pred_voted_masks.frames.tensor, torch.tensor([[0.0, 0, 10, 10]]))


def test_voter_threshold_binarizes_each_voter_before_the_average():
    boxes = torch.tensor([[0.0, 0, 10, 10]] * 2)
    masks = torch.stack([torch.full((2, 2), 0.5), torch.full((2, 2), 0.3)])
    args = (boxes, torch.tensor([0.8, 0.2]), torch.zeros(2, dtype=torch.long), torch.arange(2), masks, boxes)
    _, soft = nms_and_mask_voting(*args, resolution=2)
    _, binary = nms_and_mask_voting(*args, resolution=2, voter_threshold=0.4)
    torch.testing.assert_close(soft.masks, torch.full((1, 2, 2), 0.8 * 0.5 + 0.2 * 0.3))
    torch.testing.assert_close(binary.masks, torch.full((1, 2, 2), 0.8))


@pytest.mark.parametrize("vote_mode", ["paper", "released"])
def test_output_boxes_are_the_mask_tight_boxes_as_released(vote_mode):
    model = build(vote_mode=vote_mode)
    model.eval()
    with torch.no_grad():
        r = model(default_batch())[0]["instances"]
    assert len(r) > 0 and r.pred_masks.dtype == torch.bool and not r.has("pred_voted_masks")
    tight = BitMasks(r.pred_masks).get_bounding_boxes().tensor
    assert torch.equal(r.pred_boxes.tensor, tight) == (vote_mode == "released")


# -------------------------------------------------------------------------------------------------
# Losses: Fast R-CNN's smooth L1 and the configured weights
def test_base_config_box_losses_are_fast_rcnns_smooth_l1():
    """A 20 x 20 RoI whose GT is 1 px right: target dx = 10 x 1 / 20 = 0.5 (weight 10): smooth L1 with
    beta 1 gives 0.5 x 0.5^2 = 0.125; the GT 4 px down: dy = 2 > beta: 2 - 0.5 = 1.5. Over 2 RoIs."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs/common/models/mnc.py"))
    assert cfg.model.proposal_generator.smooth_l1_beta == pytest.approx(1 / 9)  # the RPN's sigma 3
    predictor = instantiate(cfg.model.roi_heads.box_predictor)
    boxes = torch.tensor([[0.0, 0, 20, 20], [0, 0, 20, 20]])
    gt = torch.tensor([[1.0, 0, 21, 20], [0, 4, 20, 24]])
    deltas = torch.zeros(2, 4 * predictor.num_classes)
    loss = predictor.box_reg_loss(boxes, gt, deltas, torch.tensor([0, 0]))
    torch.testing.assert_close(loss, torch.tensor((0.125 + 1.5) / 2))


def test_every_configured_loss_weight_scales_its_losses_only():
    weights = {"mask_loss_weight": 2.0}
    predictor = {"loss_weight": {"loss_cls": 3.0, "loss_box_reg": 5.0}}
    rpn = {"loss_weight": {"loss_rpn_cls": 7.0, "loss_rpn_loc": 11.0}}
    runs = []
    for scaled in (False, True):
        model = build(rpn=rpn if scaled else None, **(weights if scaled else {}))
        if scaled:
            model.roi_heads.box_predictor.loss_weight = predictor["loss_weight"]
        torch.manual_seed(5)
        runs.append(train_losses(model, default_batch()))
    factors = {"loss_rpn_cls": 7, "loss_rpn_loc": 11}
    for k in (0, 1):
        factors.update({f"loss_mask_stage{k}": 2, f"loss_cls_stage{k}": 3, f"loss_box_reg_stage{k}": 5,
                        f"loss_cls_box_level_stage{k}": 1})
    assert set(runs[0]) == set(factors)
    for name, factor in factors.items():
        torch.testing.assert_close(runs[1][name], runs[0][name] * factor, msg=name)
    assert runs[0]["loss_box_reg_stage0"] > 0 and runs[0]["loss_mask_stage1"] > 0


# -------------------------------------------------------------------------------------------------
# Configs and yacs
@pytest.mark.parametrize("config, num_stages, end_to_end", [
    ("configs/VOC-SBD/mnc_VGG16_5stage_e2e.py", 5, True),  # Table 1 (d)
    ("configs/VOC-SBD/mnc_VGG16_3stage_e2e.py", 3, True),  # Table 1 (c)
    ("configs/VOC-SBD/mnc_VGG16_5stage_detached.py", 5, False),
    ("configs/COCO-InstanceSegmentation/mnc_R_50_FPN_1x.py", 5, True),
])
def test_paper_setting_configs_train_as_released_where_the_paper_is_silent(config, num_stages, end_to_end):
    cfg = LazyConfig.load(os.path.join(REPO, config)).model
    heads, rpn = cfg.roi_heads, cfg.proposal_generator
    assert heads.box_grad_clip == rpn.box_grad_clip == 1 / 512 and heads.box_grad_scale == 1.0
    assert heads.sampling == "released" and heads.positive_fraction == 0.3 and heads.vote_mode == "released"
    assert list(heads.proposal_matcher.thresholds) == [0.1, 0.5] and list(heads.proposal_matcher.labels) == [-1, 0, 1]
    assert heads.box_predictor.smooth_l1_beta == 1.0 and rpn.smooth_l1_beta == pytest.approx(1 / 9)
    assert rpn.min_box_size == 16 and heads.mask_loss_weight == 1.0 and heads.mask_head.mask_size == 28
    # The paper's own values (Secs. 3-6).
    assert tuple(rpn.post_nms_topk) == (300, 300) and rpn.nms_thresh == 0.7 and rpn.batch_size_per_image == 256
    assert heads.batch_size_per_image == 64 and heads.pooler.output_size == 28 and heads.pooler.pool_size == 2
    assert heads.box_predictor.test_nms_thresh == 0.3 and heads.vote_iou_thresh == 0.5 and cfg.mask_threshold == 0.4
    assert heads.num_stages == num_stages and heads.test_num_stages == 5 and heads.end_to_end == end_to_end
    assert heads.mask_head.fc_dim == 256


def test_released_variant_config():
    cfg = LazyConfig.load(os.path.join(REPO, "configs/VOC-SBD/mnc_VGG16_5stage_e2e_released.py"))
    heads = cfg.model.roi_heads
    assert heads.mask_head.mask_size == 21 and heads.mask_loss_weight == 2.0 and heads.pooler.sample_at == "start"
    assert heads.masking_grad == "mask_level_positives"
    assert cfg.train.max_iter == 25000 and cfg.dataloader.train.total_batch_size == 8


def test_yacs_keys_reach_the_modules():
    model = build_model(yacs_mnc_config(BOX_GRAD_CLIP=1 / 512, SAMPLING="released", VOTE_MODE="released"))
    assert isinstance(model, MNC)
    heads, rpn = model.roi_heads, model.proposal_generator
    assert heads.box_grad_clip == rpn.box_grad_clip == 1 / 512
    assert heads.sampling == "released" and heads.vote_mode == "released"
    assert list(heads.proposal_matcher.labels) == [-1, 0, 1] and heads.proposal_matcher.thresholds[1:-1] == [0.1, 0.5]
    assert heads.box_predictor.smooth_l1_beta == 1.0 and rpn.smooth_l1_beta == pytest.approx(1 / 9)
    default = build_model(yacs_mnc_config())
    assert default.roi_heads.box_grad_clip is None and default.roi_heads.sampling == "detectron2"


# -------------------------------------------------------------------------------------------------
# Bad values: one line naming the argument, at construction
@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "0.1"])
@pytest.mark.parametrize("where", ["roi_heads.box_grad_clip", "roi_heads.box_grad_scale", "rpn.box_grad_clip"])
def test_bad_clip_or_scale_is_named_at_construction(where, value):
    owner, name = where.split(".")
    kwargs = {"rpn": {name: value}} if owner == "rpn" else {name: value}
    expected = "MNCRPN" if owner == "rpn" else "MNCROIHeads"
    with pytest.raises(ValueError, match=f"{expected}: {name} must be a finite number >= 0"):
        build(**kwargs)


@pytest.mark.parametrize("name, value", [("vote_mode", "soft"), ("sampling", "fast_rcnn"), ("mask_threshold", 1.5),
                                         ("masking_grad", "positives")])
def test_bad_mode_is_named_at_construction(name, value):
    with pytest.raises(ValueError, match=f"MNCROIHeads: {name} must"):
        build(**{name: value})


def test_yacs_bad_vote_mode_is_named():
    with pytest.raises(ValueError, match="vote_mode must be one of 'paper', 'released'; got 'x'"):
        build_model(yacs_mnc_config(VOTE_MODE="x"))

