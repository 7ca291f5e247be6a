# MNC with the authors' released code's choices where it differs from the paper (daijifeng001/MNC:
# models/VGG16/mnc_5stage, experiments/cfgs/VGG16/mnc_5stage.yml, experiments/scripts/mnc_5stage.sh):
# 21 x 21 masks, mask loss weight 2, one bilinear sample at each warp cell's start, the masking layer's
# gradient into the masks of mask-level positives only (its mask_layer.py backward), and its schedule of
# 25k iterations of 8 images (1 GPU with iter_size 8), lr 0.001, x0.1 at 20k. Its README: 65.0 / 46.3
# mAP^r@0.5 / 0.7 on VOC 2012 val. Not offered: its rounding of the RoI coordinates (it would stop the
# box gradient). docs/FIDELITY.md lists the rest.
from ..common.schedules import step_schedule
from .mnc_VGG16_5stage_e2e import dataloader, model, optimizer, train

model.roi_heads.mask_head.mask_size = 21
model.roi_heads.mask_loss_weight = 2.0
model.roi_heads.pooler.sample_at = "start"
model.roi_heads.masking_grad = "mask_level_positives"
train.max_iter = 25000
train.output_dir = "./output/voc_sbd_mnc_VGG16_5stage_e2e_released"
lr_multiplier = step_schedule(warmup_iter=0, steps=(20000 / 25000,))
