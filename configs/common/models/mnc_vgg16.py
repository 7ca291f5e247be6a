# MNC as the paper trains it on PASCAL VOC: VGG-16 conv5_3 (stride 16, 512 channels) shared by all
# stages, Faster R-CNN's VGG-16 RPN (3 scales x 3 ratios at stride 16), fc 4096 pathways, 20 classes.
from detectron2.config import LazyCall as L

from cascades.modeling.mnc import VGG16

from .mnc import model, set_fc_dim

model.backbone = L(VGG16)(freeze_at=2, out_features=["conv5"])  # conv1/conv2 fixed, as in Fast R-CNN
rpn = model.proposal_generator
rpn.in_features = ["conv5"]
rpn.head.in_channels = 512
rpn.head.num_anchors = 9
rpn.anchor_generator.sizes = [[128, 256, 512]]
rpn.anchor_generator.strides = [16]
rpn.pre_nms_topk = (12000, 6000)

heads = model.roi_heads
heads.num_classes = 20
heads.in_features = ["conv5"]
heads.pooler.scales = (1.0 / 16,)
heads.mask_head.input_shape.channels = 512
heads.box_head.input_shape.channels = 512
model = set_fc_dim(model, 4096)
