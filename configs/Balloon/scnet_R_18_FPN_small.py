# SCNet, ResNet-18-FPN(64) from scratch on balloon at short side 256: trains on a CPU.
from detectron2.model_zoo import get_config

from ..common.data.balloon import NUM_CLASSES, SEMANTIC_NUM_CLASSES, dataloader
from ..common.models.cascade_mask_rcnn_semantic_fpn import small_model
from ..common.models.scnet_fpn import model
from ..common.schedules import step_schedule
from ..common.train import train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)

train.max_iter = 2000
train.eval_period = 500
train.checkpointer.period = 500
train.output_dir = "./output/balloon_scnet_R_18_FPN_small"

optimizer = get_config("common/optim.py").SGD
# From scratch, lr 0.02 (the COCO value) diverged within 60 iterations on balloon; 0.01 with a
# longer warm-up trains.
optimizer.lr = 0.01
lr_multiplier = step_schedule(warmup_iter=100)
