# mmdetection's htc_x101-32x4d_fpn_16xb1-20e_coco: its published checkpoint (COCO val2017 box AP 46.1, mask
# AP 40.5, as mmdetection reports them) in this project's model; docs/MMDET.md.
from cascades.checkpoint.mmdet_conventions import follow_mmdet
from cascades.model_zoo import get_checkpoint_url

from ..htc_R_50_FPN_1x import dataloader, model, optimizer
from ..scnet_R_50_FPN_20e import lr_multiplier, train

follow_mmdet(model, dataloader, depth=101, groups=32, width_per_group=4, score_thresh=0.001)
train.init_checkpoint = get_checkpoint_url("COCO-InstanceSegmentation/mmdet/htc_X_101_32x4d_FPN_20e.py")
