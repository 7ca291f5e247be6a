# HTC (Chen et al., CVPR 2019): interleaved box/mask stages, mask information flow, semantic branch.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from cascades.modeling import HTCMaskHead, HTCROIHeads

from .cascade_mask_rcnn_semantic_fpn import model

roi_heads = model.roi_heads
roi_heads._target_ = HTCROIHeads
del roi_heads.sample_consistent
roi_heads.mask_head = [
    L(HTCMaskHead)(
        input_shape=ShapeSpec(channels=256, width=14, height=14),
        num_classes="${...num_classes}",
        conv_dims=[256] * 5,
        with_prev_stage=t > 0,
    )
    for t in range(3)
]
