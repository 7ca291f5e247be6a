# MNC 5-stage end to end on COCO with ResNet-50-FPN (RoI warp pooler over p2-p5), detectron2's 1x
# schedule (90k iterations, 16 images per batch, lr 0.02, steps at 60k/80k).
from detectron2.model_zoo import get_config

from ..common.models.mnc import model
from ..common.schedules import step_schedule
from ..common.train import train

dataloader = get_config("common/data/coco.py").dataloader
optimizer = get_config("common/optim.py").SGD

model.backbone.bottom_up.freeze_at = 2
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
train.max_iter = 90000
train.output_dir = "./output/coco_mnc_R_50_FPN_1x"
# detectron2's 1x: 1000-iteration warm-up, x0.1 at 60k and 80k of 90k (fractions: they follow train.max_iter).
lr_multiplier = step_schedule(warmup_iter=1000, steps=(60000 / 90000, 80000 / 90000))
