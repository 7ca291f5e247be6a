# HTC on coco128-seg (80 classes), the small CPU set-up of configs/Balloon/htc_R_18_FPN_small.py.
from ..common.data.coco128_seg import NUM_CLASSES, SEMANTIC_NUM_CLASSES, dataloader
from ..common.models.cascade_mask_rcnn_semantic_fpn import small_model
from ..common.models.htc_fpn import model
from ..common.small_recipe import lr_multiplier, optimizer, train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
train.output_dir = "./output/coco128_htc_R_18_FPN_small"
