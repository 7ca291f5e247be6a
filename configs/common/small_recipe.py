"""The training recipe of the small CPU models (configs/{Balloon,COCO128}/*_R_18_FPN_small.py): from
scratch, batch 2 at short side 256, on a 2-core CPU. See docs/SMALL_MODELS.md for why and what it reaches.

AdamW (lr 1e-3, weight decay 0.05), not SGD: with SGD (lr 0.01, momentum 0.9) a single batch's gradient
20-40x the median norm moved the unnormalized box / semantic heads far enough for their losses to grow,
and with them the next gradients, to overflow within 3-5 iterations (balloon: iterations 54-322 over
seeds and models; detectron2's own Mask R-CNN too). AdamW's step is bounded by its LR per weight,
whatever the gradient's size, which breaks that loop.
"""

from detectron2.model_zoo import get_config

from .schedules import step_schedule
from .train import train

optimizer = get_config("common/optim.py").AdamW
optimizer.lr = 1e-3
optimizer.weight_decay = 0.05
lr_multiplier = step_schedule(warmup_iter=100)  # then x0.1 at 75% and 90% of the run

train.max_iter = 500
train.eval_period = train.max_iter  # evaluated once, at the end
train.checkpointer.period = 100
train.checkpointer.max_to_keep = 1  # the latest periodic checkpoint (for --resume) and model_final
train.log_period = 20
