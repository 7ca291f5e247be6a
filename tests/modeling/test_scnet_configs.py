"""Every SCNet/HTC/Cascade config loads and builds; the yacs route builds the same models."""
import glob
import os

import pytest

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_model

from cascades.modeling import HTCROIHeads, SCNetROIHeads, add_cascades_config
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
    "scnet_ablation_sc_R_50_FPN_1x": (1, True, False, False),
    "scnet_ablation_fr_R_50_FPN_1x": (3, False, True, False),
    "scnet_ablation_gc_R_50_FPN_1x": (3, False, False, True),
    "scnet_ablation_sc_fr_R_50_FPN_1x": (1, True, True, False),
    "scnet_ablation_naive_sc_R_50_FPN_1x": (3, True, False, False),
    "scnet_R_50_FPN_1x": (1, True, True, True),
}


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


def _num_params(model):
    return sum(p.numel() for p in model.parameters())


def test_yacs_route_builds_the_same_models():
    scnet = build_model(_yacs_cfg("SCNetROIHeads", "SCNetMaskHead", 12))
    lazy = instantiate(LazyConfig.load(os.path.join(REPO, "configs/common/models/scnet_fpn.py")).model)
    assert _num_params(scnet) == _num_params(lazy)

    cfg = _yacs_cfg("HTCROIHeads", "HTCMaskHead", 4)
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.ENABLED = False
    cfg.MODEL.SEMANTIC_HEAD.RESIDUAL = False
    htc = build_model(cfg)
    lazy = instantiate(LazyConfig.load(os.path.join(REPO, "configs/common/models/htc_fpn.py")).model)
    assert isinstance(htc.roi_heads, HTCROIHeads) and _num_params(htc) == _num_params(lazy)
