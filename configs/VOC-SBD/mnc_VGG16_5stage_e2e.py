# MNC, the paper's main setting (Table 1 (d), Table 2): VGG-16, 5-stage cascade trained end to end,
# VOC 2012 train + SBD masks, shorter side 600, lr 0.001 for 32k iterations then 0.0001 for 8k,
# 8 images per batch. Paper: 63.5 mAP^r@0.5, 41.5 @0.7 on VOC 2012 val.
from detectron2.model_zoo import get_config

from ..common.data.voc_sbd import dataloader
from ..common.models.mnc_vgg16 import model
from ..common.schedules import step_schedule
from ..common.train import train

# An ImageNet VGG-16 converted to this backbone's names (see docs/MODEL_ZOO.md, "Checkpoints"); from scratch if empty.
train.init_checkpoint = ""
train.max_iter = 40000
train.output_dir = "./output/voc_sbd_mnc_VGG16_5stage_e2e"

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.001
optimizer.weight_decay = 0.0005
lr_multiplier = step_schedule(warmup_iter=0, steps=(32000 / 40000,))
