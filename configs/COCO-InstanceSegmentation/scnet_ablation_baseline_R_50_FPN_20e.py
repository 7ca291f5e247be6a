# SCNet Tables 2 and 3, first row: Cascade Mask R-CNN + semantic branch, the baseline every ablation row
# adds components to (scnet_ablation_*_R_50_FPN_20e.py; all of them: scnet_R_50_FPN_20e.py), on the
# paper's schedule (20 epochs, steps at 16 and 19; "Implementation Details": all experiments).
# The semantic branch is the full SCNet's (its 4 convs as 2 residual blocks, the released
# SCNetSemanticHead), so that each row differs from this one only in the component it names. The paper
# names none of this ("the semantic branch (Chen et al. 2019a)") and the released code has no ablation
# configs; the released SCNet is Table 2's last row (COCO val mask AP 40.0 / box 44.5 for the paper's 39.8 /
# 44.6). Table 1's Cascade baseline, with HTC's plain branch, is cascade_mask_rcnn_semantic_R_50_FPN_20e.py.
from .cascade_mask_rcnn_semantic_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.semantic_head.residual = True
