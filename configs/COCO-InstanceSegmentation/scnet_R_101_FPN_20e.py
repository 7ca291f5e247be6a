# SCNet R-101-FPN, 20 epochs.
from .scnet_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
