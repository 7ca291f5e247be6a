# SCNet (Vu et al., AAAI 2021) as released: effective sample consistency (one 12-conv residual mask
# head on the last stage), feature relay, global context (lambda = 3), residual semantic branch.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from cascades.modeling import FeatureRelayHead, GlobalContextHead, SCNetMaskHead

from .cascade_mask_rcnn_semantic_fpn import FPN_SHAPES, model

roi_heads = model.roi_heads
roi_heads.sample_consistent = True
roi_heads.mask_head = L(SCNetMaskHead)(
    input_shape=ShapeSpec(channels=256, width=14, height=14),
    num_classes="${..num_classes}",
    conv_dims=[256] * 13,  # 12 convs + the deconv
    residual=True,
)
roi_heads.feature_relays = [
    L(FeatureRelayHead)(in_channels=1024, out_channels=256, roi_size=7, scale_factor=2)
]
roi_heads.global_context_head = L(GlobalContextHead)(
    input_shape=FPN_SHAPES,
    in_feature="p6",
    num_classes="${..num_classes}",
    conv_dim=256,
    num_convs=4,
    loss_weight=3.0,
)
roi_heads.semantic_head.residual = True
