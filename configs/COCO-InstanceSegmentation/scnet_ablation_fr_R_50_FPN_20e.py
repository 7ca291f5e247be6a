# SCNet Table 2, "+FR": the baseline with a feature relay into each of its three mask heads (SCNet's relay,
# one per stage).
import copy

from ..common.models.scnet_fpn import roi_heads as _scnet
from .scnet_ablation_baseline_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.feature_relays = [copy.deepcopy(_scnet.feature_relays[0]) for _ in model.roi_heads.mask_head]
