# Cascade Mask R-CNN + semantic branch with SCNet's small balloon set-up.
from ..common.data.balloon import NUM_CLASSES, SEMANTIC_NUM_CLASSES, dataloader
from ..common.models.cascade_mask_rcnn_semantic_fpn import model, small_model
from ..common.small_recipe import lr_multiplier, optimizer, train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
train.output_dir = "./output/balloon_cascade_mask_rcnn_semantic_R_18_FPN_small"
