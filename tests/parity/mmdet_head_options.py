"""The head options that mmdetection's converted weights still need, emulated for the parity tests.

Each patch below is the exact specification of one option that our heads lack (docs/MMDET.md,
"Differences left"): with all of them, our models compute mmdetection's outputs to float precision;
the parity tests measure each difference without them. When the heads gain these options, the configs
under configs/COCO-InstanceSegmentation/mmdet/ set them and this module goes away.
"""
import contextlib
import types

from torch import nn
from torch.nn import functional as F

from cascades.modeling import residual_convs, semantic_head
from cascades.modeling.fast_rcnn_inference import fast_rcnn_inference, with_globals
from detectron2.modeling.roi_heads import CascadeROIHeads

OPTIONS = ("residual_relu", "semantic_align_corners", "semantic_box_pool", "average_logits")


def _residual_pair_without_final_relu(self, x):
    # mmdet.models.layers.SimplifiedBasicBlock: "Last ReLU in forward function is removed".
    return self.conv2(F.relu(self.conv1(x))) + x


def _fused_semantic_forward_align_corners(self, features):
    # mmdet FusedSemanticHead.forward: levels resized with bilinear, align_corners=True.
    size = features[self.fusion_level].shape[-2:]
    fused = 0
    for name, lateral in zip(self.in_features, self.lateral_convs):
        x = features[name]
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        fused = fused + lateral(x)
    x = self.convs(fused)
    return self.predictor(x), self.embedding(x)


class _PoolThenAverage(nn.Module):
    """mmdetection's semantic RoI extractor pools at the mask size (14) for both branches; the box
    branch averages it 2x2 to 7x7 (adaptive_avg_pool2d in HTC/SCNetRoIHead._bbox_forward)."""

    def __init__(self, mask_pooler, box_size):
        super().__init__()
        self.mask_pooler = mask_pooler
        self.box_size = box_size

    def forward(self, features, boxes):
        return F.adaptive_avg_pool2d(self.mask_pooler(features, boxes), self.box_size)


def _softmax_then(inference):
    def with_softmax(boxes, scores, *args):
        return inference(boxes, [F.softmax(s, dim=-1) for s in scores], *args)

    return with_softmax


def _average_logits(roi_heads):
    """mmdet CascadeRoIHead._refine_roi averages the stages' cls_score (logits); predict_by_feat then
    applies one softmax. Here: each stage's "probabilities" are its logits, and the softmax comes
    after detectron2's average, before the final inference."""
    for predictor in roi_heads.box_predictor:
        predictor.predict_probs = lambda predictions, proposals: predictions[0].split(
            [len(p) for p in proposals])
    forward_box = with_globals(CascadeROIHeads._forward_box,
                               fast_rcnn_inference=_softmax_then(fast_rcnn_inference))
    roi_heads._forward_box = types.MethodType(forward_box, roi_heads)


@contextlib.contextmanager
def mmdet_head_options(model, options=OPTIONS):
    """Within the block, ``model``'s ROI heads behave as mmdetection's for the given options."""
    roi_heads = model.roi_heads
    saved_pair = residual_convs._ResidualPair.forward
    saved_semantic = semantic_head.FusedSemanticHead.forward
    saved_pooler = getattr(roi_heads, "semantic_box_pooler", None)
    try:
        if "residual_relu" in options:
            residual_convs._ResidualPair.forward = _residual_pair_without_final_relu
        if "semantic_align_corners" in options:
            semantic_head.FusedSemanticHead.forward = _fused_semantic_forward_align_corners
        if "semantic_box_pool" in options and saved_pooler is not None:
            roi_heads.semantic_box_pooler = _PoolThenAverage(roi_heads.semantic_mask_pooler,
                                                             roi_heads.box_pooler.output_size)
        if "average_logits" in options:
            _average_logits(roi_heads)
        yield model
    finally:
        residual_convs._ResidualPair.forward = saved_pair
        semantic_head.FusedSemanticHead.forward = saved_semantic
        if saved_pooler is not None:
            roi_heads.semantic_box_pooler = saved_pooler
        roi_heads.__dict__.pop("_forward_box", None)
        for predictor in roi_heads.box_predictor:
            predictor.__dict__.pop("predict_probs", None)

