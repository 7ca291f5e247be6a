# SCNet Table 2, "+GC": the baseline with SCNet's global context branch.
from ..common.models.scnet_fpn import roi_heads as _scnet
from .scnet_ablation_baseline_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.global_context_head = _scnet.global_context_head
