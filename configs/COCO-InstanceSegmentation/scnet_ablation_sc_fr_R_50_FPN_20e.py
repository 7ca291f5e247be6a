# SCNet Table 2, "SC + FR": effective sample consistency and its one feature relay, no global context.
from ..common.models.scnet_fpn import roi_heads as _scnet
from .scnet_ablation_sc_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.feature_relays = _scnet.feature_relays
