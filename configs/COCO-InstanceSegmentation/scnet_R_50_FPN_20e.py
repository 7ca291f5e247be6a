# SCNet R-50-FPN, 20 epochs, lr x0.1 after epochs 16 and 19 (the paper's Table 1 schedule).
from ..common.schedules import step_schedule
from .scnet_R_50_FPN_1x import COCO_ITERS_PER_EPOCH, dataloader, model, optimizer, train

train.max_iter = 20 * COCO_ITERS_PER_EPOCH
lr_multiplier = step_schedule(warmup_iter=500, steps=(16 / 20, 19 / 20))
