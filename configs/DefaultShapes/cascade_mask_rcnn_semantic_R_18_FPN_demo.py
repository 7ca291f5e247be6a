"""Our Cascade Mask R-CNN + semantic branch (the SCNet paper's baseline: SCNetROIHeads without sample
consistency, feature relay or global context) with the SCNet demo's backbone, data and recipe
(`make demo MODEL=cascade`). detectron2's own Cascade Mask R-CNN is cascade_mask_rcnn_R_18_FPN_demo.py."""

from ..common.models.cascade_mask_rcnn_semantic_fpn import model, small_model
from .scnet_R_18_FPN_demo import NUM_CLASSES, SEMANTIC_NUM_CLASSES, dataloader, lr_multiplier, optimizer, train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
train.output_dir = "./output/demo/cascade"
