# SCNet X-101-64x4d-FPN, 20 epochs. torchvision-style ResNeXt (stride in the 3x3 conv, RGB input).
from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BottleneckBlock, ResNet

from .scnet_R_50_FPN_20e import dataloader, lr_multiplier, model, optimizer, train

# make_default_stages ties the bottleneck width to out_channels / 4; ResNeXt 64x4d needs 64 groups
# of 4 channels in res2 (256), doubling per stage.
model.backbone.bottom_up.stages = [
    L(ResNet.make_stage)(
        block_class=BottleneckBlock,
        num_blocks=n,
        stride_per_block=[stride] + [1] * (n - 1),
        in_channels=in_channels,
        out_channels=out_channels,
        bottleneck_channels=256 * 2**k,
        num_groups=64,
        stride_in_1x1=False,
        norm="FrozenBN",
    )
    for k, (n, stride, in_channels, out_channels) in enumerate(
        zip([3, 4, 23, 3], [1, 2, 2, 2], [64, 256, 512, 1024], [256, 512, 1024, 2048])
    )
]
model.pixel_mean = [123.675, 116.280, 103.530]
model.pixel_std = [58.395, 57.120, 57.375]
model.input_format = "RGB"
dataloader.train.mapper.image_format = "RGB"
# Converted with detectron2's tools/convert-torchvision-to-d2.py from torchvision-style weights.
train.init_checkpoint = "X-101-64x4d.pkl"
