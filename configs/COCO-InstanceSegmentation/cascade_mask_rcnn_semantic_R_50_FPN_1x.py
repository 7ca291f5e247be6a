# Cascade Mask R-CNN + HTC's semantic branch R-50-FPN, 1x (the SCNet paper's schedule: _20e).
from ..common.models.cascade_mask_rcnn_semantic_fpn import model
from .scnet_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

model.backbone.bottom_up.freeze_at = 2
