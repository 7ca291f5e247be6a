# Cascade Mask R-CNN with HTC's semantic branch: the SCNet paper's Cascade Mask R-CNN (Table 1; its Table 2
# baseline takes SCNet's residual semantic branch: scnet_ablation_baseline_R_50_FPN_20e.py).
# Three 4-conv mask heads, head t trained on box stage t's samples, mask ensemble at test time,
# box heads and test settings of the released SCNet/HTC configs.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.roi_heads import MaskRCNNConvUpsampleHead

from cascades.modeling import FusedSemanticHead, SCNetROIHeads, SemanticRCNN

from .small_resnet_fpn import small_resnet18_fpn, small_roi_heads

model = get_config("common/models/cascade_rcnn.py").model
model._target_ = SemanticRCNN
model.proposal_generator.post_nms_topk = (2000, 1000)
model.proposal_generator.smooth_l1_beta = 1.0 / 9  # the released RPN's SmoothL1Loss(beta=1/9)

FPN_SHAPES = {f"p{k}": ShapeSpec(channels=256, stride=2**k) for k in range(2, 7)}

roi_heads = model.roi_heads
roi_heads._target_ = SCNetROIHeads
roi_heads.sample_consistent = False
roi_heads.stage_loss_weights = [1.0, 0.5, 0.25]
roi_heads.sample_every_stage = True  # released code: 512 RoIs, 25% positives, at every stage
# mmdetection's target stds (0.1, 0.2), (0.05, 0.1), (0.033, 0.067) as detectron2 weights = 1 / std.
for predictor, stds in zip(roi_heads.box_predictors, [(0.1, 0.2), (0.05, 0.1), (0.033, 0.067)]):
    w_xy, w_wh = (1.0 / s for s in stds)
    predictor.box2box_transform.weights = (w_xy, w_xy, w_wh, w_wh)
    predictor.smooth_l1_beta = 1.0
    predictor.test_score_thresh = 0.001
    predictor.test_nms_thresh = 0.5
    predictor.test_topk_per_image = 100
roi_heads.mask_head = [
    L(MaskRCNNConvUpsampleHead)(
        input_shape=ShapeSpec(channels=256, width=14, height=14),
        num_classes="${...num_classes}",
        conv_dims=[256] * 5,
    )
    for _ in range(3)
]
roi_heads.semantic_head = L(FusedSemanticHead)(
    input_shape=FPN_SHAPES,
    in_features=["p2", "p3", "p4", "p5", "p6"],
    fusion_level="p3",
    num_classes=183,  # COCO-stuff labels (things + stuff); ignore 255
    conv_dim=256,
    num_convs=4,
    residual=False,
    loss_weight=0.2,
)


def small_model(model, num_classes: int, semantic_num_classes: int, width: int = 64):
    """
    Shrinks any of the HTC/SCNet/Cascade models above in place, for CPU training from scratch on
    small data: ResNet-18 (BasicBlock, BN), FPN and heads of ``width`` channels, box fc 256, few
    proposals and RoIs. The structure (stages, heads, fusions) is unchanged.
    """
    small_resnet18_fpn(model, width, norm="BN", post_nms_topk=(200, 100))
    # detectron2's L1 RPN loss, as the small recipe and its studies (docs/SMALL_MODELS.md) were run.
    model.proposal_generator.smooth_l1_beta = 0.0
    small_roi_heads(model, num_classes, width)
    heads = model.roi_heads
    # Later stages keep all refined boxes (detectron2's cascade): with 64 RoIs per image there is
    # little to subsample.
    heads.sample_every_stage = False
    for relay in heads.get("feature_relays") or []:
        relay.in_channels, relay.out_channels = 256, width
    for branch in (heads.semantic_head, heads.get("global_context_head")):
        if branch is not None:
            branch.conv_dim = width
            for shape in branch.input_shape.values():
                shape.channels = width
    heads.semantic_head.num_classes = semantic_num_classes
    return model
