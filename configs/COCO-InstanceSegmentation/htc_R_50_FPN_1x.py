# HTC R-50-FPN, 1x, with the same data, schedule and box settings as scnet_R_50_FPN_1x.
from ..common.models.htc_fpn import model
from .scnet_R_50_FPN_1x import dataloader, lr_multiplier, optimizer, train

model.backbone.bottom_up.freeze_at = 2
