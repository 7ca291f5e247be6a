# MNC on coco128-seg (80 classes), the small CPU set-up of configs/Balloon/mnc_R_18_FPN_small.py.
from detectron2.data import DatasetMapper

from ..Balloon.mnc_R_18_FPN_small import lr_multiplier, model, optimizer, train
from ..common.data.coco128_seg import NUM_CLASSES, dataloader

model.roi_heads.num_classes = NUM_CLASSES
dataloader.train.mapper._target_ = DatasetMapper
train.output_dir = "./output/coco128_mnc_R_18_FPN_small"
