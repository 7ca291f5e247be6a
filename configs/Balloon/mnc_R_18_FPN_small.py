# MNC 5-stage end to end, ResNet-18-FPN(64), fc 256, from scratch on balloon at short side 256 (CPU).
from detectron2.data import DatasetMapper
from detectron2.model_zoo import get_config

from ..common.data.balloon import NUM_CLASSES, dataloader
from ..common.models.mnc import model, small_mnc
from ..common.schedules import step_schedule
from ..common.train import train

model = small_mnc(model, NUM_CLASSES)
# MNC has no semantic branch: the plain mapper, without derived semantic maps.
dataloader.train.mapper._target_ = DatasetMapper

train.max_iter = 2000
train.eval_period = 500
train.checkpointer.period = 500
train.output_dir = "./output/balloon_mnc_R_18_FPN_small"

optimizer = get_config("common/optim.py").SGD
optimizer.lr = 0.01
lr_multiplier = step_schedule(train.max_iter, warmup_iter=100)
