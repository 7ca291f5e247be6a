# Table 3 "naive SC": the baseline's three 4-conv mask heads, all fed the last stage's samples.
from .cascade_mask_rcnn_semantic_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.sample_consistent = True
