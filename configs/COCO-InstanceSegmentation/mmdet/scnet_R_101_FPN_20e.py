# mmdetection's scnet_r101_fpn_20e_coco: its published checkpoint (COCO val2017 box AP 45.8, mask AP 40.9,
# as mmdetection reports them) in this project's model; docs/MMDET.md.
from cascades.checkpoint.mmdet_conventions import follow_mmdet
from cascades.model_zoo import get_checkpoint_url

from ..scnet_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

follow_mmdet(model, dataloader, depth=101, score_thresh=0.001)
train.init_checkpoint = get_checkpoint_url("COCO-InstanceSegmentation/mmdet/scnet_R_101_FPN_20e.py")
