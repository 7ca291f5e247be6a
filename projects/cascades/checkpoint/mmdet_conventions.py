"""Config settings under which mmdetection's converted weights compute what they compute in mmdetection.

Used by configs/COCO-InstanceSegmentation/mmdet/: pytorch-style ResNet/ResNeXt (stride in the 3x3
conv), RGB input normalized by ImageNet's mean and std, frozen BatchNorm, the box stages' coder
stds, and the test score threshold of the released config. What the heads' code does differently is
listed in docs/MMDET.md.
"""
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BottleneckBlock, ResNet

__all__ = ["MMDET_BOX_STDS", "MMDET_PIXEL_MEAN", "MMDET_PIXEL_STD", "follow_mmdet", "resnet_stages"]

# mmdetection's data_preprocessor (RGB order)
MMDET_PIXEL_MEAN = [123.675, 116.28, 103.53]
MMDET_PIXEL_STD = [58.395, 57.12, 57.375]
# The target_stds (x, y, w, h) of each box stage's DeltaXYWHBBoxCoder (means 0); detectron2's
# Box2BoxTransform divides by weights where mmdetection multiplies by stds.
MMDET_BOX_STDS = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]
_BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}


def resnet_stages(depth: int, groups: int = 1, width_per_group: int = 64, norm: str = "FrozenBN"):
    """The four stages of a pytorch-style ResNet (``groups=1``) or ResNeXt (e.g. 32 groups of 4
    channels in res2), as mmdetection builds them: the bottleneck width is
    ``groups * width_per_group`` in res2, doubling per stage."""
    return [
        L(ResNet.make_stage)(
            block_class=BottleneckBlock,
            num_blocks=n,
            stride_per_block=[1 if k == 0 else 2] + [1] * (n - 1),
            in_channels=64 if k == 0 else 256 * 2 ** (k - 1),
            out_channels=256 * 2**k,
            bottleneck_channels=groups * width_per_group * 2**k,
            num_groups=groups,
            stride_in_1x1=False,
            norm=norm,
        )
        for k, n in enumerate(_BLOCKS[depth])
    ]


def follow_mmdet(model, dataloader, *, depth: int, groups: int = 1, width_per_group: int = 64,
                 score_thresh: float):
    """Sets ``model`` (one of configs/common/models' cascades) and ``dataloader`` to mmdetection's
    conventions, for a backbone of ``depth`` layers (ResNeXt when ``groups > 1``) and the released
    config's test score threshold (``rcnn.score_thr``)."""
    model.backbone.bottom_up.stages = resnet_stages(depth, groups, width_per_group)
    model.pixel_mean = MMDET_PIXEL_MEAN
    model.pixel_std = MMDET_PIXEL_STD
    model.input_format = "RGB"
    dataloader.train.mapper.image_format = "RGB"  # the test mapper follows the train mapper's format
    for predictor, stds in zip(model.roi_heads.box_predictors, MMDET_BOX_STDS, strict=True):
        predictor.box2box_transform.weights = tuple(1.0 / s for s in stds)
        predictor.test_score_thresh = score_thresh
    return model
