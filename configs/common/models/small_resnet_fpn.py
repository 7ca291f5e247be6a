# The backbone and RPN half of the small CPU models (configs/*/..._R_18_FPN_small.py), shared by
# cascade_mask_rcnn_semantic_fpn.small_model and mnc.small_mnc.


def small_resnet18_fpn(model, width: int, norm: str, post_nms_topk):
    """Shrinks an R-50-FPN model config in place: ResNet-18 (BasicBlock) normalized by ``norm``, FPN and
    RPN head of ``width`` channels, 1000 / 500 proposals before NMS and ``post_nms_topk`` after, 128
    anchors sampled per image. Returns ``model``."""
    bottom_up = model.backbone.bottom_up
    bottom_up.stem.norm = norm
    bottom_up.stages.depth = 18
    bottom_up.stages.norm = norm
    del bottom_up.stages.stride_in_1x1  # BasicBlock has no bottleneck
    model.backbone.out_channels = width
    rpn = model.proposal_generator
    rpn.head.in_channels = width
    rpn.pre_nms_topk = (1000, 500)
    rpn.post_nms_topk = post_nms_topk
    rpn.batch_size_per_image = 128
    return model
