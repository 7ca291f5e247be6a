# The parts shared by the small CPU models (configs/*/..._R_18_FPN_small.py): the backbone and RPN half
# (also used by mnc.small_mnc) and the box / mask heads of detectron2's and our cascades.


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


def _heads(roi_heads, *keys):
    """The head configs under the first of ``keys`` that ``roi_heads`` has: a per-stage list
    (``box_heads``) or a single head (``box_head``), as a list."""
    for key in keys:
        value = roi_heads.get(key)
        if value is not None:
            return [value] if "_target_" in value else list(value)
    return []


def small_roi_heads(model, num_classes: int, width: int, box_fc: int = 256, batch_size_per_image: int = 64):
    """Shrinks the ROI heads of a Mask R-CNN, Cascade Mask R-CNN, HTC or SCNet config in place: box heads of
    two fc ``box_fc`` on ``width``-channel RoI features, mask heads of ``width``-channel convs (their number
    unchanged), ``batch_size_per_image`` RoIs sampled per image, ``num_classes`` classes. Returns ``model``."""
    heads = model.roi_heads
    heads.num_classes = num_classes
    heads.batch_size_per_image = batch_size_per_image
    for box_head in _heads(heads, "box_heads", "box_head"):
        box_head.input_shape.channels = width
        box_head.fc_dims = [box_fc, box_fc]
    for predictor in _heads(heads, "box_predictors", "box_predictor"):
        predictor.input_shape.channels = box_fc
    for mask_head in _heads(heads, "mask_head"):
        mask_head.input_shape.channels = width
        mask_head.conv_dims = [width] * len(mask_head.conv_dims)
    return model


def small_mask_rcnn(model, num_classes: int, width: int = 64):
    """detectron2's Mask R-CNN or Cascade Mask R-CNN config (model zoo, R-50-FPN) at the size of our small
    cascades (cascade_mask_rcnn_semantic_fpn.small_model): ResNet-18 (BN) + FPN of ``width`` channels,
    box fc 256, mask convs of ``width``, 200 / 100 proposals, 64 RoIs per image. Its heads and test-time
    settings stay detectron2's, except the score threshold: 0.001 as in our cascades (the released
    mmdetection configs), so that every small model is evaluated on the same detections per image."""
    small_resnet18_fpn(model, width, norm="BN", post_nms_topk=(200, 100))
    small_roi_heads(model, num_classes, width)
    for predictor in _heads(model.roi_heads, "box_predictors", "box_predictor"):
        predictor.test_score_thresh = 0.001
        # A value, not "${..num_classes}": omegaconf 2.3 loses the parent of dicts inside lists when
        # LazyConfig.save deep-copies the config, and the interpolation then fails.
        predictor.num_classes = num_classes
    model.roi_heads.mask_head.num_classes = num_classes
    return model
