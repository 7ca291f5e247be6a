# Table 2 row "SC + FR": sample consistency and feature relay, no global context.
from .scnet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.global_context_head = None
