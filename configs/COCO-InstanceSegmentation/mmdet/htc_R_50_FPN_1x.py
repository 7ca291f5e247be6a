# mmdetection's htc_r50_fpn_1x_coco: its published checkpoint (COCO val2017 box AP 42.3, mask AP 37.4, as
# mmdetection reports them) in this project's model; docs/MMDET.md.
from cascades.checkpoint.mmdet_conventions import follow_mmdet
from cascades.model_zoo import get_checkpoint_url

from ..htc_R_50_FPN_1x import dataloader, model, optimizer
from ..scnet_R_50_FPN_1x import lr_multiplier, train

follow_mmdet(model, dataloader, depth=50, score_thresh=0.001)
train.init_checkpoint = get_checkpoint_url("COCO-InstanceSegmentation/mmdet/htc_R_50_FPN_1x.py")
