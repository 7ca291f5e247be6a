# Cascade Mask R-CNN + HTC's semantic branch R-50-FPN on the SCNet paper's schedule (20 epochs, lr x0.1
# after epochs 16 and 19; "Implementation Details": every experiment): its Table 1 Cascade Mask R-CNN row.
from .cascade_mask_rcnn_semantic_R_50_FPN_1x import dataloader, model, optimizer
from .scnet_R_50_FPN_20e import lr_multiplier, train
