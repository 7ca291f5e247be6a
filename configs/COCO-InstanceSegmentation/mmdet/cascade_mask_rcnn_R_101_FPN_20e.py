# mmdetection's cascade-mask-rcnn_r101_fpn_20e_coco: its published checkpoint (COCO val2017 box AP 43.4,
# mask AP 37.8, as mmdetection reports them) in this project's model; docs/MMDET.md.
# mmdetection's Cascade Mask R-CNN has no semantic branch and trains on plain COCO.
from detectron2.model_zoo import get_config

from cascades.checkpoint.mmdet_conventions import follow_mmdet
from cascades.model_zoo import get_checkpoint_url

from ..cascade_mask_rcnn_semantic_R_50_FPN_1x import model, optimizer
from ..scnet_R_50_FPN_20e import lr_multiplier, train

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations[0].short_edge_length = 800  # 1333x800 and flip, as released
model.roi_heads.semantic_head = None

follow_mmdet(model, dataloader, depth=101, score_thresh=0.05)
train.init_checkpoint = get_checkpoint_url(
    "COCO-InstanceSegmentation/mmdet/cascade_mask_rcnn_R_101_FPN_20e.py")
