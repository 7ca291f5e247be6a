"""mmdetection's published COCO checkpoints that load into this project's configs under
configs/COCO-InstanceSegmentation/mmdet/. Names, URLs and COCO val2017 AP are copied from mmdetection's
model-zoo metadata (configs/{scnet,htc,cascade_rcnn}/metafile.yml, as shipped in the mmdet 3.3.0
wheel); the AP figures are mmdetection's, not re-measured here."""
from typing import NamedTuple

__all__ = ["MMDetCheckpoint", "MMDET_CHECKPOINTS"]


class MMDetCheckpoint(NamedTuple):
    config: str  # our config: configs/COCO-InstanceSegmentation/mmdet/<config>.py
    mmdet_name: str  # the model's name in mmdetection's metafile.yml
    box_ap: float  # published COCO val2017 box AP
    mask_ap: float  # published COCO val2017 mask AP
    url: str  # mmdetection's download URL (the file name carries the start of its sha256)


MMDET_CHECKPOINTS = [
    MMDetCheckpoint(
        'scnet_R_50_FPN_1x', 'scnet_r50_fpn_1x_coco', 43.5, 39.2,
        'https://download.openmmlab.com/mmdetection/v2.0/scnet/scnet_r50_fpn_1x_coco/scnet_r50_fpn_1x_coco-c3f09857.pth',
    ),
    MMDetCheckpoint(
        'scnet_R_50_FPN_20e', 'scnet_r50_fpn_20e_coco', 44.5, 40.0,
        'https://download.openmmlab.com/mmdetection/v2.0/scnet/scnet_r50_fpn_20e_coco/scnet_r50_fpn_20e_coco-a569f645.pth',
    ),
    MMDetCheckpoint(
        'scnet_R_101_FPN_20e', 'scnet_r101_fpn_20e_coco', 45.8, 40.9,
        'https://download.openmmlab.com/mmdetection/v2.0/scnet/scnet_r101_fpn_20e_coco/scnet_r101_fpn_20e_coco-294e312c.pth',
    ),
    MMDetCheckpoint(
        'scnet_X_101_64x4d_FPN_20e', 'scnet_x101-64x4d_fpn_20e_coco', 47.5, 42.3,
        'https://download.openmmlab.com/mmdetection/v2.0/scnet/scnet_x101_64x4d_fpn_20e_coco/scnet_x101_64x4d_fpn_20e_coco-fb09dec9.pth',
    ),
    MMDetCheckpoint(
        'htc_R_50_FPN_1x', 'htc_r50_fpn_1x_coco', 42.3, 37.4,
        'https://download.openmmlab.com/mmdetection/v2.0/htc/htc_r50_fpn_1x_coco/htc_r50_fpn_1x_coco_20200317-7332cf16.pth',
    ),
    MMDetCheckpoint(
        'htc_R_50_FPN_20e', 'htc_r50_fpn_20e_coco', 43.3, 38.3,
        'https://download.openmmlab.com/mmdetection/v2.0/htc/htc_r50_fpn_20e_coco/htc_r50_fpn_20e_coco_20200319-fe28c577.pth',
    ),
    MMDetCheckpoint(
        'htc_R_101_FPN_20e', 'htc_r101_fpn_20e_coco', 44.8, 39.6,
        'https://download.openmmlab.com/mmdetection/v2.0/htc/htc_r101_fpn_20e_coco/htc_r101_fpn_20e_coco_20200317-9b41b48f.pth',
    ),
    MMDetCheckpoint(
        'htc_X_101_32x4d_FPN_20e', 'htc_x101-32x4d_fpn_16xb1-20e_coco', 46.1, 40.5,
        'https://download.openmmlab.com/mmdetection/v2.0/htc/htc_x101_32x4d_fpn_16x1_20e_coco/htc_x101_32x4d_fpn_16x1_20e_coco_20200318-de97ae01.pth',
    ),
    MMDetCheckpoint(
        'htc_X_101_64x4d_FPN_20e', 'htc_x101-64x4d_fpn_16xb1-20e_coco', 47.0, 41.4,
        'https://download.openmmlab.com/mmdetection/v2.0/htc/htc_x101_64x4d_fpn_16x1_20e_coco/htc_x101_64x4d_fpn_16x1_20e_coco_20200318-b181fd7a.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_R_50_FPN_1x', 'cascade-mask-rcnn_r50_fpn_1x_coco', 41.2, 35.9,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_r50_fpn_1x_coco/cascade_mask_rcnn_r50_fpn_1x_coco_20200203-9d4dcb24.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_R_50_FPN_20e', 'cascade-mask-rcnn_r50_fpn_20e_coco', 41.9, 36.5,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_r50_fpn_20e_coco/cascade_mask_rcnn_r50_fpn_20e_coco_bbox_mAP-0.419__segm_mAP-0.365_20200504_174711-4af8e66e.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_R_101_FPN_1x', 'cascade-mask-rcnn_r101_fpn_1x_coco', 42.9, 37.3,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_r101_fpn_1x_coco/cascade_mask_rcnn_r101_fpn_1x_coco_20200203-befdf6ee.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_R_101_FPN_20e', 'cascade-mask-rcnn_r101_fpn_20e_coco', 43.4, 37.8,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_r101_fpn_20e_coco/cascade_mask_rcnn_r101_fpn_20e_coco_bbox_mAP-0.434__segm_mAP-0.378_20200504_174836-005947da.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_X_101_32x4d_FPN_1x', 'cascade-mask-rcnn_x101-32x4d_fpn_1x_coco', 44.3, 38.3,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_x101_32x4d_fpn_1x_coco/cascade_mask_rcnn_x101_32x4d_fpn_1x_coco_20200201-0f411b1f.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_X_101_32x4d_FPN_20e', 'cascade-mask-rcnn_x101-32x4d_fpn_20e_coco', 45.0, 39.0,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_x101_32x4d_fpn_20e_coco/cascade_mask_rcnn_x101_32x4d_fpn_20e_coco_20200528_083917-ed1f4751.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_X_101_64x4d_FPN_1x', 'cascade-mask-rcnn_x101-64x4d_fpn_1x_coco', 45.3, 39.2,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_x101_64x4d_fpn_1x_coco/cascade_mask_rcnn_x101_64x4d_fpn_1x_coco_20200203-9a2db89d.pth',
    ),
    MMDetCheckpoint(
        'cascade_mask_rcnn_X_101_64x4d_FPN_20e', 'cascade-mask-rcnn_x101-64x4d_fpn_20e_coco', 45.6, 39.5,
        'https://download.openmmlab.com/mmdetection/v2.0/cascade_rcnn/cascade_mask_rcnn_x101_64x4d_fpn_20e_coco/cascade_mask_rcnn_x101_64x4d_fpn_20e_coco_20200512_161033-bdb5126a.pth',
    ),
]
