# MNC R-101-FPN, 1x (the paper's COCO entry used ResNet-101: 24.6 mAP@[.5:.95] on test-dev, C4-style).
from .mnc_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
train.output_dir = "./output/coco_mnc_R_101_FPN_1x"
