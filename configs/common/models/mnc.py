# MNC (Dai, He, Sun, CVPR 2016), the base every MNC config overrides: ResNet-50-FPN here; the VOC-SBD
# configs swap in VGG-16 (C4-like, one stride-16 map). Stage 1: RPN, 300 proposals after NMS 0.7
# (train and test). Stages 2-5: RoI warp 28x28 -> 2x2 max -> 14x14 -> fc 256 -> fc 28*28 masks;
# 7x7 masked + unmasked pathways -> (N+1)-way softmax and class-wise regression; 5-stage, end to end.
# Inference: 300 + 300 instances, per-class NMS 0.3, mask voting at IoU 0.5, binarized at 0.4.
# Where the paper is silent, the authors' released training (daijifeng001/MNC): box-coordinate
# gradients clipped at 1/512 per delta, smooth L1 (sigma 1 heads, 3 RPN), its RoI sampling, 16-px
# minimum proposals, and its NMS + voting. docs/FIDELITY.md lists every choice and how to change it.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import FastRCNNOutputLayers

from cascades.layers import RoIWarpPooler
from cascades.modeling.mnc import MNC, MNCRPN, MNCBoxHead, MNCMaskHead, MNCROIHeads

from .small_resnet_fpn import small_resnet18_fpn

model = get_config("common/models/mask_rcnn_fpn.py").model
model._target_ = MNC
model.mask_threshold = 0.4
model.proposal_generator._target_ = MNCRPN
model.proposal_generator.post_nms_topk = (300, 300)
model.proposal_generator.nms_thresh = 0.7
model.proposal_generator.min_box_size = 16  # RPN_MIN_SIZE (the released code: 16 px of the original image)
model.proposal_generator.smooth_l1_beta = 1.0 / 9  # Fast R-CNN's smooth L1 with sigma 3 (beta = 1 / sigma^2)
model.proposal_generator.box_grad_clip = 1.0 / 512  # the released proposal layer's backward (use_clip, clip_base)

model.roi_heads = L(MNCROIHeads)(
    num_classes=80,
    batch_size_per_image=64,
    # The released sampler: at most 30% foreground (IoU >= 0.5), background 85% from IoU [0.1, 0.5) and
    # 15% from [0, 0.1) (the matcher's labels 0 and -1), GT boxes appended to stages 4/5's RoIs too.
    sampling="released",
    positive_fraction=0.3,
    proposal_matcher=L(Matcher)(thresholds=[0.1, 0.5], labels=[-1, 0, 1], allow_low_quality_matches=False),
    in_features=["p2", "p3", "p4", "p5"],
    pooler=L(RoIWarpPooler)(output_size=28, scales=(1.0 / 4, 1.0 / 8, 1.0 / 16, 1.0 / 32), pool_size=2),
    mask_head=L(MNCMaskHead)(input_shape=ShapeSpec(channels=256, height=14, width=14), fc_dim=256, mask_size=28),
    box_head=L(MNCBoxHead)(input_shape=ShapeSpec(channels=256, height=7, width=7), fc_dims=[1024, 1024]),
    box_predictor=L(FastRCNNOutputLayers)(
        input_shape=ShapeSpec(channels=2 * 1024),  # the two pathways concatenated
        box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
        num_classes="${..num_classes}",
        # Every candidate competes for the test_topk_per_image slots (100, the released code's cap), however
        # low its score: AP (COCO's and mAP^r) only gains from low-scoring detections ranked last, and an
        # early model that scores background everywhere still yields ranked detections.
        test_score_thresh=0.0,
        test_nms_thresh=0.3,
        test_topk_per_image=100,
        smooth_l1_beta=1.0,  # Fast R-CNN's smooth L1, sigma 1
    ),
    box_feature_pool=2,
    num_stages=5,
    test_num_stages=5,
    end_to_end=True,
    box_grad_scale=1.0,  # the paper's Eq. 9
    box_grad_clip=1.0 / 512,  # the released stage bridge's backward
    mask_loss_weight=1.0,  # the paper's (the released code: 2)
    mask_threshold="${..mask_threshold}",
    # NMS on the boxes the masks were predicted in, voters binarized at 0.4, mask-tight output boxes;
    # "paper": NMS on the class-regressed boxes, soft masks averaged.
    vote_mode="released",
    vote_iou_thresh=0.5,
)


def set_fc_dim(model, dim: int):
    """Width of the stage-3 pathways' two fc layers (4096 in the paper), in the head and the predictor."""
    model.roi_heads.box_head.fc_dims = [dim, dim]
    model.roi_heads.box_predictor.input_shape.channels = 2 * dim
    return model


def small_mnc(model, num_classes: int, width: int = 64, fc_dim: int = 256):
    """Shrinks the FPN model above in place for CPU training from scratch on small data: ResNet-18
    (BasicBlock), FPN of ``width`` channels, fc ``fc_dim``, fewer proposals. Same structure.
    GroupNorm rather than BN: at 2 images per batch BN's statistics are noise, and a model evaluated
    early (before its running statistics settle) gives features ~100x too large in eval mode."""
    small_resnet18_fpn(model, width, norm="GN", post_nms_topk=(100, 100))
    # No minimum proposal size: the released 16 px are of the original image, 2-7 px of balloon's photos
    # (short sides 576-2019) at the small configs' short side 256.
    model.proposal_generator.min_box_size = 0
    heads = model.roi_heads
    heads.num_classes = num_classes
    heads.mask_head.input_shape.channels = width
    heads.box_head.input_shape.channels = width
    return set_fc_dim(model, fc_dim)
