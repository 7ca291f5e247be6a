# Table 2 row "+FR": Cascade Mask R-CNN + semantic with a feature relay per stage's mask head.
from cascades.modeling import FeatureRelayHead
from detectron2.config import LazyCall as L

from .cascade_mask_rcnn_semantic_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.feature_relays = [
    L(FeatureRelayHead)(in_channels=1024, out_channels=256, roi_size=7, scale_factor=2)
    for _ in range(3)
]
