# SCNet R-50-FPN, 1x (12 epochs, lr x0.1 after epochs 8 and 11), the released configuration:
# 1333x800, flip, 16 images per batch, SGD lr 0.02. Table 2's "all components" row.
from detectron2.model_zoo import get_config

from ..common.data.coco_semantic import dataloader
from ..common.models.scnet_fpn import model
from ..common.schedules import step_schedule
from ..common.train import train

COCO_ITERS_PER_EPOCH = 117266 // 16  # coco_2017_train images with annotations / batch size

model.backbone.bottom_up.freeze_at = 2
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.max_iter = 12 * COCO_ITERS_PER_EPOCH
lr_multiplier = step_schedule(warmup_iter=500, steps=(8 / 12, 11 / 12))
optimizer = get_config("common/optim.py").SGD
