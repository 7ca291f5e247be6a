"""MNC, 5 stages end to end (RoI warping, box gradients through the mask stage), ResNet-18-FPN(64,
GroupNorm), with the SCNet demo's data and recipe (`make demo MODEL=mnc`); MNC has no semantic branch,
so its data is mapped without semantic maps."""

from detectron2.data import DatasetMapper

from ..common.models.mnc import model, small_mnc
from .scnet_R_18_FPN_demo import NUM_CLASSES, dataloader, lr_multiplier, optimizer, train

model = small_mnc(model, NUM_CLASSES)
dataloader.train.mapper._target_ = DatasetMapper
train.output_dir = "./output/demo/mnc"
