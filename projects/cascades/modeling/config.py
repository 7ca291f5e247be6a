"""yacs defaults for the heads added here, for users of detectron2's CfgNode configs.

Our own configs are LazyConfig files that pass keyword arguments directly; these keys only back
the heads' ``from_config``. Defaults are the released SCNet configuration. detectron2's own keys keep
detectron2's defaults, which differ from the released SCNet/HTC test and box settings: for those set
``ROI_HEADS.SCORE_THRESH_TEST = 0.001``, ``ROI_BOX_HEAD.SMOOTH_L1_BETA = 1.0`` and
``ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS`` to 1 / mmdetection's target stds (as
``configs/common/models/cascade_mask_rcnn_semantic_fpn.py`` does).
"""
from detectron2.config import CfgNode as CN


def add_cascades_config(cfg):
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = [1.0, 0.5, 0.25]
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.SAMPLE_EVERY_STAGE = True

    cfg.MODEL.SEMANTIC_HEAD = CN()
    cfg.MODEL.SEMANTIC_HEAD.ENABLED = True
    cfg.MODEL.SEMANTIC_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    cfg.MODEL.SEMANTIC_HEAD.FUSION_LEVEL = "p3"
    cfg.MODEL.SEMANTIC_HEAD.NUM_CLASSES = 183
    cfg.MODEL.SEMANTIC_HEAD.CONV_DIM = 256
    cfg.MODEL.SEMANTIC_HEAD.NUM_CONVS = 4
    cfg.MODEL.SEMANTIC_HEAD.RESIDUAL = True
    cfg.MODEL.SEMANTIC_HEAD.LOSS_WEIGHT = 0.2
    cfg.MODEL.SEMANTIC_HEAD.IGNORE_VALUE = 255
    cfg.MODEL.SEMANTIC_HEAD.NORM = ""

    cfg.MODEL.GLOBAL_CONTEXT_HEAD = CN()
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.ENABLED = True
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.IN_FEATURE = "p6"
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.CONV_DIM = 256
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.NUM_CONVS = 4
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.LOSS_WEIGHT = 3.0
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.NORM = ""

    # Residual pairs in the mask head (SCNet's 12-conv head); the number of convs is NUM_CONV.
    cfg.MODEL.ROI_MASK_HEAD.RESIDUAL = True
    cfg.MODEL.ROI_MASK_HEAD.FEATURE_RELAY = True
    return cfg
