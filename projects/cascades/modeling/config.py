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
    # "logits": the stages' class logits averaged, then one softmax (released); "probabilities":
    # detectron2's mean of the stages' probabilities.
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.SCORE_AVERAGING = "logits"
    # GT boxes added to the proposals of every stage in training (released); False: stage 0 only.
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.ADD_GT_EVERY_STAGE = True

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
    # Released fusion: each level resized (bilinear, aligned corners), then its 1x1 conv + ReLU.
    cfg.MODEL.SEMANTIC_HEAD.RESIZE_BEFORE_LATERAL = True
    cfg.MODEL.SEMANTIC_HEAD.ALIGN_CORNERS = True
    cfg.MODEL.SEMANTIC_HEAD.RELU_AFTER_RESIDUAL = False
    # The embedding pooled for the box branch: "from_mask_resolution" (RoI-aligned at the mask
    # pooler's size, then averaged down to the box pooler's: released) or "direct".
    cfg.MODEL.SEMANTIC_HEAD.BOX_POOL = "from_mask_resolution"

    cfg.MODEL.GLOBAL_CONTEXT_HEAD = CN()
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.ENABLED = True
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.IN_FEATURE = "p6"
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.CONV_DIM = 256
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.NUM_CONVS = 4
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.LOSS_WEIGHT = 3.0
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.NORM = ""
    cfg.MODEL.GLOBAL_CONTEXT_HEAD.RELU_AFTER_RESIDUAL = False

    # Residual pairs in the mask head (SCNet's 12-conv head); the number of convs is NUM_CONV.
    cfg.MODEL.ROI_MASK_HEAD.RESIDUAL = True
    # A ReLU after each residual pair's sum, as in a ResNet block; the released heads have none (the
    # semantic and global-context heads' keys above likewise).
    cfg.MODEL.ROI_MASK_HEAD.RELU_AFTER_RESIDUAL = False
    cfg.MODEL.ROI_MASK_HEAD.FEATURE_RELAY = True
    # HTC at test: the mean of all stages' mask probabilities (paper, mmdetection 2); False: the last
    # head's only (mmdetection 3.x).
    cfg.MODEL.ROI_MASK_HEAD.MASK_ENSEMBLE = True
    return cfg
