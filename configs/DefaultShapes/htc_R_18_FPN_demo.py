"""HTC with the SCNet demo's backbone, data and recipe (`make demo MODEL=htc`)."""

from ..common.models.cascade_mask_rcnn_semantic_fpn import small_model
from ..common.models.htc_fpn import model
from .scnet_R_18_FPN_demo import NUM_CLASSES, SEMANTIC_NUM_CLASSES, dataloader, lr_multiplier, optimizer, train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
train.output_dir = "./output/demo/htc"
