"""SCNet, ResNet-18 (BasicBlock, BN) + FPN of 64 channels, from scratch on the generated shapes at short
side 256 on a CPU: the model of `make demo`, and the base of the other demo configs (htc, cascade
+ semantic, mnc), which import its data, recipe and training settings and replace the model.

The small models' recipe (configs/common/small_recipe.py: AdamW lr 1e-3, weight decay 0.05) with a
50-iteration warm-up and 600 iterations of 2 images (3 passes over the 400 training images).
"""

from cascades.data import SemanticDatasetMapper

from ..common.data.default_shapes import dataloader
from ..common.models.cascade_mask_rcnn_semantic_fpn import small_model
from ..common.models.scnet_fpn import model
from ..common.schedules import step_schedule
from ..common.small_recipe import optimizer, train

NUM_CLASSES = 5  # cascades.data.default_shapes.CLASS_NAMES
SEMANTIC_NUM_CLASSES = NUM_CLASSES + 1  # semantic maps derived from the instances: background + things

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
dataloader.train.mapper._target_ = SemanticDatasetMapper

lr_multiplier = step_schedule(warmup_iter=50)  # then x0.1 at 75% and 90% of the run
train.max_iter = 600
train.eval_period = train.max_iter  # evaluated once, at the end
train.seed = 1  # a fixed seed: runs differ only through threading and the data-loading worker
train.output_dir = "./output/demo/scnet"
