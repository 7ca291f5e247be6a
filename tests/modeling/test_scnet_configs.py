"""Every SCNet/HTC/Cascade config loads and builds; the yacs route builds the same models."""
import glob
import os

import pytest

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.layers import Conv2d
from detectron2.modeling import build_model

from cascades.modeling import HTCROIHeads, SCNetMaskHead, SCNetROIHeads, add_cascades_config
from cascades.modeling.semantic_rcnn import SemanticRCNN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    path
    for folder in ("COCO-InstanceSegmentation", "Balloon", "COCO128")
    for prefix in ("scnet", "htc", "cascade_mask_rcnn_semantic")
    for path in glob.glob(os.path.join(REPO, "configs", folder, prefix + "_*.py"))
)
# (config name -> number of mask heads, sample consistent, feature relays, global context)
ABLATIONS = {
    "cascade_mask_rcnn_semantic_R_50_FPN_1x": (3, False, False, False),
    "scnet_ablation_baseline_R_50_FPN_20e": (3, False, False, False),
    "scnet_ablation_sc_R_50_FPN_20e": (1, True, False, False),
    "scnet_ablation_fr_R_50_FPN_20e": (3, False, True, False),
    "scnet_ablation_gc_R_50_FPN_20e": (3, False, False, True),
    "scnet_ablation_sc_fr_R_50_FPN_20e": (1, True, True, False),
    "scnet_ablation_naive_sc_R_50_FPN_20e": (3, True, False, False),
    "scnet_R_50_FPN_1x": (1, True, True, True),
    "scnet_R_50_FPN_20e": (1, True, True, True),
}


def test_every_ablation_row_is_a_config():
    names = {os.path.splitext(os.path.basename(p))[0] for p in CONFIGS}
    assert set(ABLATIONS) <= names, sorted(set(ABLATIONS) - names)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_config_builds(path):
    cfg = LazyConfig.load(path)
    model = instantiate(cfg.model)
    assert isinstance(model, SemanticRCNN)
    heads = model.roi_heads
    assert isinstance(heads, (SCNetROIHeads, HTCROIHeads))
    assert heads.stage_loss_weights == [1.0, 0.5, 0.25]
    name = os.path.basename(path)[: -len(".py")]
    if name in ABLATIONS:
        assert (
            len(heads.mask_head),
            heads.sample_consistent,
            heads.feature_relays is not None,
            heads.global_context_head is not None,
        ) == ABLATIONS[name]
    if "COCO-InstanceSegmentation" in path:
        assert cfg.dataloader.train.total_batch_size == 16 and cfg.optimizer.lr == 0.02
        assert heads.num_classes == 80 and heads.semantic_head.predictor.out_channels == 183


def test_released_schedules():
    epoch = 117266 // 16
    for schedule, epochs, steps in [("1x", 12, (8, 11)), ("20e", 20, (16, 19))]:
        cfg = LazyConfig.load(os.path.join(REPO, f"configs/COCO-InstanceSegmentation/scnet_R_50_FPN_{schedule}.py"))
        assert cfg.train.max_iter == epochs * epoch
        schedule = instantiate(cfg.lr_multiplier)
        milestones = schedule._schedulers[1]._milestones
        assert [round(m / epoch) for m in milestones] == list(steps)


def _yacs_cfg(heads, mask_head, num_convs):
    cfg = add_cascades_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "SemanticRCNN"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.OUT_FEATURES = cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_HEADS.NAME = heads
    cfg.MODEL.ROI_MASK_HEAD.NAME = mask_head
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = num_convs
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7  # detectron2's default is 14
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    return cfg


def _structure(model):
    """Module types by name, and state-dict entries with their shapes: equal structures build the same
    network (the weights aside)."""
    modules = {name: type(m) for name, m in model.named_modules()}
    return modules, {name: tuple(v.shape) for name, v in model.state_dict().items()}


def _hyperparameters(heads):
    """What the keys of add_cascades_config control, and which samples the heads train on."""
    semantic = heads.semantic_head
    out = {
        "stage_loss_weights": heads.stage_loss_weights,
        "sample_every_stage": heads.sample_every_stage,
        "matchers": [m.thresholds for m in heads.proposal_matchers],
        "semantic": (semantic.in_features, semantic.fusion_level, semantic.loss_weight, semantic.ignore_value,
                     semantic.resize_before_lateral, semantic.align_corners),
        # The released behaviour where the papers are silent (the heads' defaults).
        "released": (heads.add_gt_every_stage, heads.score_averaging, heads.semantic_box_pool),
        "relu_after_residual": {getattr(m, "relu_after_residual", None) for m in heads.modules()},
    }
    if isinstance(heads, SCNetROIHeads):
        out.update(sample_consistent=heads.sample_consistent, mask_loss_weights=heads.mask_loss_weights)
    if isinstance(heads, HTCROIHeads):
        out.update(mask_ensemble=heads.mask_ensemble)
    if heads.global_context_head is not None:
        out["global_context"] = (heads.global_context_head.in_feature, heads.global_context_head.loss_weight)
    return out


@pytest.mark.parametrize("method", ["scnet", "htc"])
def test_yacs_route_builds_the_same_models(method):
    if method == "scnet":
        cfg = _yacs_cfg("SCNetROIHeads", "SCNetMaskHead", 12)
    else:
        cfg = _yacs_cfg("HTCROIHeads", "HTCMaskHead", 4)
        cfg.MODEL.GLOBAL_CONTEXT_HEAD.ENABLED = False
        cfg.MODEL.SEMANTIC_HEAD.RESIDUAL = False
    yacs = build_model(cfg)
    lazy = instantiate(LazyConfig.load(os.path.join(REPO, f"configs/common/models/{method}_fpn.py")).model)
    (yacs_modules, yacs_params), (lazy_modules, lazy_params) = _structure(yacs), _structure(lazy)
    assert yacs_modules == lazy_modules
    assert yacs_params == lazy_params
    assert _hyperparameters(yacs.roi_heads) == _hyperparameters(lazy.roi_heads)


def test_scnet_config_is_the_released_model():
    """SCNet R-50-FPN as in the paper and the released config: one 12-conv residual mask head on the last
    stage's samples, feature relay 1024 -> 256 x 7 x 7 -> x2, global context on p6 (lambda 3), residual
    semantic branch over p2-p6 at p3 (183 classes, gamma 0.2), test score > 0.001, NMS 0.5, 100 per image;
    the released code's behaviour where the paper is silent."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs/COCO-InstanceSegmentation/scnet_R_50_FPN_1x.py"))
    heads = instantiate(cfg.model).roi_heads
    (mask_head,) = heads.mask_head
    assert isinstance(mask_head, SCNetMaskHead)
    assert len([m for m in mask_head.convs.modules() if isinstance(m, Conv2d)]) == 12
    assert len(list(mask_head.convs.children())) == 6  # residual pairs
    assert heads.mask_source_stages == [2] and heads.mask_loss_weights == [1.75]
    (relay,) = heads.feature_relays
    assert (relay.fc.in_features, relay.out_shape, relay.scale_factor) == (1024, (256, 7, 7), 2)
    assert (heads.global_context_head.in_feature, heads.global_context_head.loss_weight) == ("p6", 3.0)
    semantic = heads.semantic_head
    assert semantic.in_features == ["p2", "p3", "p4", "p5", "p6"]
    assert (semantic.fusion_level, semantic.stride) == ("p3", 8)
    assert (semantic.loss_weight, semantic.ignore_value, semantic.predictor.out_channels) == (0.2, 255, 183)
    assert [m.thresholds[1] for m in heads.proposal_matchers] == [0.5, 0.6, 0.7]
    for predictor in heads.box_predictor:
        test_settings = (predictor.test_score_thresh, predictor.test_nms_thresh, predictor.test_topk_per_image)
        assert test_settings == (0.001, 0.5, 100)
    # Where the paper is silent, the released code's behaviour (docs/FIDELITY.md).
    assert (heads.add_gt_every_stage, heads.score_averaging, heads.semantic_box_pool) == (
        True, "logits", "from_mask_resolution")
    assert (semantic.resize_before_lateral, semantic.align_corners) == (True, True)
    pairs = [m for m in heads.modules() if hasattr(m, "relu_after_residual")]
    assert len(pairs) == 6 + 2 + 2 and not any(p.relu_after_residual for p in pairs)
