# HTC with SCNet's small balloon set-up (same data, schedule and backbone).
from ..common.data.balloon import NUM_CLASSES, SEMANTIC_NUM_CLASSES
from ..common.models.cascade_mask_rcnn_semantic_fpn import small_model
from ..common.models.htc_fpn import model
from .scnet_R_18_FPN_small import dataloader, lr_multiplier, optimizer, train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
train.output_dir = "./output/balloon_htc_R_18_FPN_small"
