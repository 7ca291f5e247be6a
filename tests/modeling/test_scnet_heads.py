"""Shapes and basic behaviour of every SCNet/HTC head, on random input."""
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, Instances

from cascades.modeling import (
    FeatureRelayHead,
    FusedSemanticHead,
    GlobalContextHead,
    HTCMaskHead,
    SCNetMaskHead,
)
from cascades.modeling.global_context_head import image_class_targets
from cascades.modeling.residual_convs import ConvStack

FPN = {f"p{k}": ShapeSpec(channels=16, stride=2**k) for k in range(2, 7)}


def fpn_features(batch=2, size=64):
    return {name: torch.randn(batch, 16, size // s.stride, size // s.stride) for name, s in FPN.items()}


def test_conv_stack_residual_pairs():
    stack = ConvStack(8, 16, 4, residual=True)
    assert len([m for m in stack.modules() if isinstance(m, torch.nn.Conv2d)]) == 4 + 1  # + 1x1
    assert stack(torch.randn(2, 8, 5, 5)).shape == (2, 16, 5, 5)
    with pytest.raises(ValueError, match="even num_convs"):
        ConvStack(8, 8, 3, residual=True)


def test_semantic_head_shapes_and_loss():
    head = FusedSemanticHead(
        FPN, in_features=list(FPN), fusion_level="p3", num_classes=5, conv_dim=16, residual=True
    )
    logits, embedding = head(fpn_features())
    assert logits.shape == (2, 5, 8, 8) and embedding.shape == (2, 16, 8, 8)
    targets = torch.randint(0, 5, (2, 64, 64))
    loss = head.losses(logits, targets)["loss_semantic_seg"]
    assert loss.item() > 0
    # All-ignored targets: a zero loss that still connects to the graph, not NaN.
    ignored = head.losses(logits, torch.full((2, 64, 64), 255))["loss_semantic_seg"]
    assert ignored.item() == 0 and ignored.requires_grad
    with pytest.raises(ValueError, match="sem_seg_targets is None"):
        head.check_targets(None)
    with pytest.raises(ValueError, match="fusion_level"):
        FusedSemanticHead(FPN, in_features=["p2"], fusion_level="p3", num_classes=5)


def test_global_context_head_shapes():
    head = GlobalContextHead(FPN, in_feature="p6", num_classes=7, conv_dim=16)
    logits, context = head(fpn_features())
    assert logits.shape == (2, 7) and context.shape == (2, 16)


def _gt(classes, image_size=(64, 64)):
    inst = Instances(image_size)
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10]] * len(classes)).reshape(-1, 4))
    return inst


def test_global_context_targets_are_the_image_class_sets():
    targets = image_class_targets([_gt([3, 1, 3]), _gt([]), _gt([0, 6])], num_classes=7)
    expected = torch.zeros(3, 7)
    expected[0, [1, 3]] = 1
    expected[2, [0, 6]] = 1
    assert torch.equal(targets, expected)
    head = GlobalContextHead(FPN, in_feature="p6", num_classes=7, conv_dim=16, loss_weight=3.0)
    logits = torch.zeros(3, 7)
    loss = head.losses(logits, [_gt([3, 1, 3]), _gt([]), _gt([0, 6])])["loss_glbctx"]
    assert loss.item() == pytest.approx(3.0 * torch.log(torch.tensor(2.0)).item(), rel=1e-6)


def test_feature_relay_shapes():
    relay = FeatureRelayHead(in_channels=32, out_channels=16, roi_size=7, scale_factor=2)
    assert relay(torch.randn(5, 32)).shape == (5, 16, 14, 14)
    assert relay(torch.randn(0, 32)).shape == (0, 16, 14, 14)


def test_scnet_mask_head_is_twelve_residual_convs():
    head = SCNetMaskHead(
        ShapeSpec(channels=16, height=14, width=14), num_classes=3, conv_dims=[16] * 13
    )
    convs = [m for m in head.convs.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 12 and len(list(head.convs.children())) == 6
    assert head.layers(torch.randn(4, 16, 14, 14)).shape == (4, 3, 28, 28)
    with pytest.raises(ValueError, match="one width"):
        SCNetMaskHead(ShapeSpec(channels=16), num_classes=3, conv_dims=[16, 8, 16])


def test_htc_mask_head_information_flow():
    shape = ShapeSpec(channels=16, height=14, width=14)
    first = HTCMaskHead(shape, num_classes=3, conv_dims=[16] * 5, with_prev_stage=False)
    second = HTCMaskHead(shape, num_classes=3, conv_dims=[16] * 5, with_prev_stage=True)
    x = torch.randn(4, 16, 14, 14)
    f1 = first.mask_features(x)
    f2 = second.mask_features(x, f1)
    assert f1.shape == f2.shape == (4, 16, 14, 14)
    assert second.predict(f2).shape == (4, 3, 28, 28)
    # The previous stage's features change the result: the flow is used.
    assert not torch.allclose(f2, second.mask_features(x, torch.zeros_like(f1)))
    with pytest.raises(ValueError, match="prev_features"):
        second.mask_features(x)


def test_heads_take_a_conv_norm():
    semantic = FusedSemanticHead(
        FPN, in_features=list(FPN), fusion_level="p3", num_classes=5, conv_dim=32, norm="GN"
    )
    context = GlobalContextHead(FPN, in_feature="p6", num_classes=7, conv_dim=32, norm="GN")
    mask = SCNetMaskHead(
        ShapeSpec(channels=16, height=14, width=14), num_classes=3, conv_dims=[32] * 5, conv_norm="GN"
    )
    assert semantic(fpn_features())[0].shape == (2, 5, 8, 8)
    assert mask.layers(torch.randn(2, 16, 14, 14)).shape == (2, 3, 28, 28)
    for head, num_convs in ((semantic, 4), (context, 4), (mask, 4)):
        norms = [m for m in head.modules() if isinstance(m, torch.nn.GroupNorm)]
        assert len(norms) == num_convs
