# Table 2 row "+SC": effective sample consistency only (no feature relay, no global context).
from .scnet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.feature_relays = None
model.roi_heads.global_context_head = None
