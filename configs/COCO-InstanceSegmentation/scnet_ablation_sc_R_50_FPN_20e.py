# SCNet Tables 2 and 3, "+SC" (effective sample consistency): the baseline's three 4-conv mask heads
# become SCNet's one 12-conv residual head, trained on the last box stage's positives.
from ..common.models.scnet_fpn import roi_heads as _scnet
from .scnet_ablation_baseline_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.sample_consistent = True
model.roi_heads.mask_head = _scnet.mask_head
