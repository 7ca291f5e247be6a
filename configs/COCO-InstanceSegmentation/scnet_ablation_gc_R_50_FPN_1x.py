# Table 2 row "+GC": Cascade Mask R-CNN + semantic with SCNet's global context branch.
from ..common.models.scnet_fpn import model as scnet_model
from .cascade_mask_rcnn_semantic_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.global_context_head = scnet_model.roi_heads.global_context_head
