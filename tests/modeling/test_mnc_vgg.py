"""VGG-16 backbone (13 convs, stride 16) and MNC on it, from the VOC-SBD config and from yacs."""
import os

import pytest
import torch

from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.utils.events import EventStorage

from cascades.modeling.mnc import MNC, VGG16, add_mnc_config
from detectron2.modeling import build_model
from mnc_helpers import make_batch, make_target, yacs_mnc_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_vgg16_layers_strides_and_frozen_blocks():
    net = VGG16(out_features=["conv3", "conv5"])
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    out = net(torch.zeros(1, 3, 64, 96))
    assert out["conv5"].shape == (1, 512, 4, 6) and out["conv3"].shape == (1, 256, 16, 24)
    assert net.output_shape() == {"conv3": ShapeSpec(channels=256, stride=4), "conv5": ShapeSpec(channels=512, stride=16)}
    # freeze_at=2: conv1_* and conv2_* fixed, conv3_1 on trained (Fast R-CNN's VGG-16 fine-tuning).
    assert [c.weight.requires_grad for c in convs] == [False] * 4 + [True] * 9
    # Parameter names as torchvision's vgg16().features.
    assert {n for n, _ in net.named_parameters()} >= {"features.0.weight", "features.28.bias"}
    # Only the layers up to the deepest requested output are built.
    assert len(VGG16(out_features=["conv2"]).features) == 9


def test_vgg16_bad_arguments():
    with pytest.raises(ValueError, match="out_features"):
        VGG16(out_features=["conv6"])
    with pytest.raises(ValueError, match="freeze_at"):
        VGG16(freeze_at=6)


def test_vgg16_from_yacs_registry():
    cfg = add_mnc_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_vgg16_backbone"
    backbone = build_backbone(cfg)
    assert isinstance(backbone, VGG16) and backbone.output_shape()["conv5"].stride == 16


def test_mnc_on_vgg16_from_the_voc_sbd_config():
    cfg = LazyConfig.load(os.path.join(REPO, "configs/VOC-SBD/mnc_VGG16_5stage_e2e.py"))
    heads = cfg.model.roi_heads
    heads.box_head.fc_dims = [64, 64]  # 4096 in the paper; the structure is what is tested here
    heads.box_predictor.input_shape.channels = 128
    heads.batch_size_per_image = 16
    cfg.model.proposal_generator.post_nms_topk = (20, 20)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert model.roi_heads.pooler.output_size == (14, 14) and model.roi_heads.num_classes == 20
    losses, r = _train_and_test(model, [14, 3])
    assert len(losses) == 10 and r.pred_masks.shape[1:] == (128, 128)


def _train_and_test(model, classes):
    batch = make_batch([make_target([[10, 20, 70, 90]], [classes[0]]), make_target([[30, 30, 100, 80]], [classes[1]])])
    model.train()
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        return losses, model(batch)[0]["instances"]


def test_mnc_from_yacs():
    cfg = yacs_mnc_config(fc_dim=64, NUM_STAGES=3)
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128]]
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model, MNC) and model.roi_heads.box_predictor.test_nms_thresh == 0.3
    assert model.roi_heads.box_head.output_shape.channels == 128
    losses, r = _train_and_test(model, [0, 2])
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_mask_stage0", "loss_cls_stage0",
                           "loss_cls_box_level_stage0", "loss_box_reg_stage0"}
    assert r.pred_masks.dtype == torch.bool
