# detectron2's own Cascade Mask R-CNN with the small cascades' backbone, data and recipe: their baseline.
from detectron2.data import DatasetMapper
from detectron2.model_zoo import get_config

from ..common.data.balloon import NUM_CLASSES, dataloader
from ..common.models.small_resnet_fpn import small_mask_rcnn
from ..common.small_recipe import lr_multiplier, optimizer, train

model = small_mask_rcnn(get_config("common/models/cascade_rcnn.py").model, NUM_CLASSES)
dataloader.train.mapper._target_ = DatasetMapper  # no semantic branch: no semantic maps to derive
train.output_dir = "./output/balloon_cascade_mask_rcnn_R_18_FPN_small"
