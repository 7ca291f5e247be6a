# SCNet Table 3, "naive SC": the baseline's three 4-conv mask heads, all trained on the last box stage's
# positives.
from .scnet_ablation_baseline_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.sample_consistent = True
