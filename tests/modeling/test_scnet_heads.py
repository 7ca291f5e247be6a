"""SCNet/HTC heads on tiny inputs with controlled weights: values computed by hand or by a few
independent lines of conv arithmetic, not only shapes."""
import math

import pytest
import torch
from torch.nn import functional as F

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

FPN = {f"p{k}": ShapeSpec(channels=4, stride=2**k) for k in range(2, 7)}


def fpn_features(batch=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(batch, 4, size // s.stride, size // s.stride, generator=g)
            for name, s in FPN.items()}


def convs_of(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]


def set_conv_biases(convs, first, second):
    """Zero weights; biases ``first`` for the first conv of every pair, ``second`` for the second."""
    with torch.no_grad():
        for k, conv in enumerate(convs):
            conv.weight.zero_()
            conv.bias.fill_(first if k % 2 == 0 else second)


def residual_pairs_reference(x, convs, relu_after_residual=False):
    """conv2(relu(conv1(x))) + x for every pair (the released SimplifiedBasicBlock), with a ReLU after
    the sum when ``relu_after_residual``: a skip around every two convs."""
    for conv1, conv2 in zip(convs[0::2], convs[1::2]):
        y = F.relu(F.conv2d(x, conv1.weight, conv1.bias, padding=1))
        x = F.conv2d(y, conv2.weight, conv2.bias, padding=1) + x
        x = F.relu(x) if relu_after_residual else x
    return x


def two_pairs_by_hand(x, relu_after_residual):
    """Two pairs with zero weights and biases 0.5, 1 on an input x < -1: each pair adds 1 to its input
    (its first conv's ReLU(0.5) never reaches the output), so x + 2 as released; with a ReLU after
    each sum, relu(relu(x + 1) + 1) = 1. A skip around every conv would add 0.5 + 1 per pair, a plain
    stack would forget x."""
    return torch.ones_like(x) if relu_after_residual else x + 2


@pytest.mark.parametrize("relu_after_residual", [False, True])
def test_residual_pairs_skip_every_two_convs(relu_after_residual):
    stack = ConvStack(4, 4, 4, residual=True, relu_after_residual=relu_after_residual).double()
    set_conv_biases(convs_of(stack), 0.5, 1.0)
    x = torch.rand(2, 4, 5, 5, dtype=torch.float64) - 5
    assert torch.allclose(stack(x), two_pairs_by_hand(x, relu_after_residual), atol=1e-12)
    # Random weights: the same value as the pairs computed conv by conv.
    torch.manual_seed(0)
    stack = ConvStack(4, 4, 4, residual=True, relu_after_residual=relu_after_residual).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    expected = residual_pairs_reference(x, convs_of(stack), relu_after_residual)
    assert torch.allclose(stack(x), expected, atol=1e-12)
    assert (stack(x) < 0).any() != relu_after_residual
    with pytest.raises(ValueError, match="even num_convs"):
        ConvStack(8, 8, 3, residual=True)
    with pytest.raises(ValueError, match="relu_after_residual must be True or False, got 'no'"):
        ConvStack(8, 8, 4, residual=True, relu_after_residual="no")


@pytest.mark.parametrize("relu_after_residual", [False, True])
def test_every_residual_head_takes_relu_after_residual(relu_after_residual):
    """The mask, semantic and global-context heads build their residual pairs with the option."""
    option = {"relu_after_residual": relu_after_residual}
    stacks = [
        SCNetMaskHead(ShapeSpec(channels=4, height=14, width=14), num_classes=3, conv_dims=[4] * 5,
                      **option).convs,
        FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=3, conv_dim=4,
                          residual=True, **option).convs,
        GlobalContextHead(FPN, in_feature="p6", num_classes=3, conv_dim=4, **option).convs,
    ]
    x = torch.rand(2, 4, 5, 5, dtype=torch.float64) - 5
    for stack in stacks:
        stack = stack.double()
        set_conv_biases(convs_of(stack), 0.5, 1.0)
        assert torch.allclose(stack(x), two_pairs_by_hand(x, relu_after_residual), atol=1e-12)


def test_scnet_mask_head_is_twelve_convs_with_a_skip_every_two():
    torch.manual_seed(0)
    head = SCNetMaskHead(ShapeSpec(channels=4, height=14, width=14), num_classes=3, conv_dims=[4] * 13)
    head = head.double()
    convs = convs_of(head.convs)
    assert len(convs) == 12
    x = torch.randn(2, 4, 14, 14, dtype=torch.float64)
    features = residual_pairs_reference(x, convs)
    expected = head.predictor(F.relu(head.deconv(features)))
    assert torch.allclose(head.layers(x), expected, atol=1e-12)
    assert head.layers(x).shape == (2, 3, 28, 28)
    # Hand-computed: zero conv weights, second biases 1: six pairs add 6 to x (no ReLU after a sum).
    set_conv_biases(convs, 0.5, 1.0)
    x = torch.rand(2, 4, 14, 14, dtype=torch.float64) - 3
    assert torch.allclose(head.layers(x), head.predictor(F.relu(head.deconv(x + 6))), atol=1e-12)
    with pytest.raises(ValueError, match="one width"):
        SCNetMaskHead(ShapeSpec(channels=16), num_classes=3, conv_dims=[16, 8, 16])


def test_feature_relay_is_fc_reshape_and_bilinear_x2():
    """fc -> (C, 7, 7) -> bilinear x2 with aligned corners (the released FeatureRelayHead): a map linear
    in (row, column) stays linear, so its 14 x 14 values are known: v(p, q) = 100 c + 10 * 6p/13 + 6q/13."""
    relay = FeatureRelayHead(in_channels=5, out_channels=2, roi_size=7, scale_factor=2).double()
    c, i, j = torch.meshgrid(torch.arange(2.0), torch.arange(7.0), torch.arange(7.0), indexing="ij")
    with torch.no_grad():
        relay.fc.weight.zero_()
        relay.fc.bias.copy_((100 * c + 10 * i + j).flatten())
    out = relay(torch.randn(3, 5, dtype=torch.float64))
    c, p, q = torch.meshgrid(torch.arange(2.0), torch.arange(14.0), torch.arange(14.0), indexing="ij")
    expected = (100 * c + 10 * 6 * p / 13 + 6 * q / 13).double()
    assert out.shape == (3, 2, 14, 14)
    assert torch.allclose(out, expected.expand(3, -1, -1, -1), atol=1e-12)
    # and the fc reads the box-head vector
    with torch.no_grad():
        relay.fc.weight.fill_(1.0)
        relay.fc.bias.zero_()
    vector = torch.tensor([[1.0, 2, 3, 4, 5]], dtype=torch.float64)
    assert torch.allclose(relay(vector), torch.full((1, 2, 14, 14), 15.0, dtype=torch.float64))
    assert relay(torch.randn(0, 5, dtype=torch.float64)).shape == (0, 2, 14, 14)


def test_global_context_is_the_mean_of_the_residual_stack_on_its_level():
    head = GlobalContextHead(FPN, in_feature="p6", num_classes=3, conv_dim=4).double()
    convs = convs_of(head.convs)
    assert len(convs) == 4
    features = {k: v.double() for k, v in fpn_features(size=256).items()}  # p6: 4 x 4
    # Hand-computed: zero conv weights, second biases 1: two pairs add 2 (no ReLU after a sum, so
    # negative values stay); then the spatial mean.
    features["p6"] = features["p6"] - 3
    set_conv_biases(convs, 0.5, 1.0)
    with torch.no_grad():
        head.classifier.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, -1]]))
        head.classifier.bias.copy_(torch.tensor([0.0, 1, 2]))
    logits, context = head(features)
    expected = features["p6"].mean(dim=(2, 3)) + 2
    assert torch.allclose(context, expected, atol=1e-12)
    w = expected
    by_hand = torch.stack([w[:, 0], w[:, 1] + w[:, 2] + 1, 2 - w[:, 3]], dim=1)
    assert torch.allclose(logits, by_hand, atol=1e-12)
    # Only the top level is read.
    other = dict(features, p5=features["p5"] * 0 + 7)
    assert torch.equal(head(other)[1], context)


def _gt(classes, image_size=(64, 64)):
    inst = Instances(image_size)
    inst.gt_classes = torch.tensor(classes, dtype=torch.int64)
    inst.gt_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10]] * len(classes)).reshape(-1, 4))
    return inst


def test_global_context_targets_are_the_image_class_sets_and_the_loss_is_3_bce():
    images = [_gt([2, 0, 2]), _gt([])]
    targets = image_class_targets(images, num_classes=3)
    assert torch.equal(targets, torch.tensor([[1.0, 0, 1], [0, 0, 0]]))
    head = GlobalContextHead(FPN, in_feature="p6", num_classes=3, conv_dim=4, loss_weight=3.0)
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    loss = head.losses(logits, images)["loss_glbctx"]

    def softplus(v):
        return math.log1p(math.exp(v))

    # BCE: -log(sigmoid(x)) = softplus(-x) for a present class, softplus(x) for an absent one.
    bce = [softplus(-2.0), softplus(-1.0), softplus(-0.5), softplus(0.0), softplus(1.0), softplus(-2.0)]
    assert loss.item() == pytest.approx(3.0 * sum(bce) / 6, rel=1e-6)


def _identity_1x1(conv):
    with torch.no_grad():
        conv.weight.copy_(torch.eye(conv.weight.shape[0], conv.weight.shape[1])[:, :, None, None])
        conv.bias.zero_()


def test_semantic_head_fuses_every_level_at_stride_8():
    head = FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=4, conv_dim=4,
                             residual=True).double()
    assert head.stride == 8
    for conv in [*head.lateral_convs, head.predictor, head.embedding]:
        _identity_1x1(conv)
    set_conv_biases(convs_of(head.convs), 0.0, 0.0)  # zero residual branches: the pairs pass x >= 0 on
    features = {k: v.double() for k, v in fpn_features().items()}
    for k, name in enumerate(FPN):  # levels other than p3 constant: they resize to themselves
        if name != "p3":
            features[name] = torch.full_like(features[name], 10.0**k)
    logits, embedding = head(features)
    expected = features["p3"] + sum(10.0**k for k, name in enumerate(FPN) if name != "p3")
    assert logits.shape == embedding.shape == (2, 4, 8, 8)
    assert torch.allclose(logits, expected, atol=1e-9) and torch.allclose(embedding, expected, atol=1e-9)
    with pytest.raises(ValueError, match="fusion_level"):
        FusedSemanticHead(FPN, in_features=["p2"], fusion_level="p3", num_classes=5)


FUSIONS = [(True, True), (False, False), (True, False), (False, True)]


def fused_by_hand(head, features, resize_before_lateral, align_corners):
    """The sum over levels of relu(1x1 conv) and the bilinear resize to p3's 8 x 8, in either order."""

    def resize(x):
        if x.shape[-2:] == (8, 8):
            return x
        return F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=align_corners)

    def lateral(conv, x):
        return F.relu(F.conv2d(x, conv.weight, conv.bias))

    levels = [(conv, features[name]) for name, conv in zip(FPN, head.lateral_convs)]
    if resize_before_lateral:
        return sum(lateral(conv, resize(x)) for conv, x in levels)
    return sum(resize(lateral(conv, x)) for conv, x in levels)


@pytest.mark.parametrize("resize_before_lateral,align_corners", FUSIONS)
def test_semantic_fusion_resizes_then_projects_each_level_with_aligned_corners(resize_before_lateral,
                                                                                align_corners):
    """As released (the defaults): each level resized to p3's resolution (bilinear, aligned corners),
    then its 1x1 conv + ReLU; the other settings as they say. Values from torch's conv and interpolate,
    level by level."""
    torch.manual_seed(0)
    options = {"resize_before_lateral": resize_before_lateral, "align_corners": align_corners}
    head = FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=4, conv_dim=4,
                             residual=True, **options).double()
    if (resize_before_lateral, align_corners) == FUSIONS[0]:
        default = FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=4)
        assert (default.resize_before_lateral, default.align_corners) == FUSIONS[0]
    set_conv_biases(convs_of(head.convs), 0.0, 0.0)  # the residual pairs pass their input on
    _identity_1x1(head.predictor)
    features = {k: v.double() - 0.5 for k, v in fpn_features().items()}  # both signs: the ReLU matters
    logits, _ = head(features)
    expected = fused_by_hand(head, features, resize_before_lateral, align_corners)
    assert torch.allclose(logits, expected, atol=1e-12)
    for other in FUSIONS:  # each setting computes something else
        if other != (resize_before_lateral, align_corners):
            assert not torch.allclose(logits, fused_by_hand(head, features, *other), atol=1e-3)
    for name in options:
        with pytest.raises(ValueError, match=f"{name} must be True or False, got 1"):
            FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=4, **{name: 1})


def test_semantic_loss_is_0_2_cross_entropy_on_subsampled_labels_ignoring_255():
    head = FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=3, conv_dim=4)
    assert head.loss_weight == 0.2 and head.ignore_value == 255
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, :, 0, 0] = torch.tensor([2.0, 0, 0])
    logits[0, :, 0, 1] = torch.tensor([0.0, 1, 0])
    logits[0, :, 1, 1] = torch.tensor([0.0, 0, 3])
    # Labels at input resolution (4 x 4); nearest subsampling reads pixels (0, 0), (0, 2), (2, 0), (2, 2).
    # 9 elsewhere: an out-of-range class that must never be read.
    labels = torch.full((1, 4, 4), 9)
    labels[0, 0, 0], labels[0, 0, 2], labels[0, 2, 0], labels[0, 2, 2] = 0, 2, 255, 1
    loss = head.losses(logits, labels)["loss_semantic_seg"]

    def ce(scores, label):
        return math.log(sum(math.exp(s) for s in scores)) - scores[label]

    expected = (ce([2, 0, 0], 0) + ce([0, 1, 0], 2) + ce([0, 0, 3], 1)) / 3
    assert loss.item() == pytest.approx(0.2 * expected, rel=1e-6)
    # All ignored: a zero loss that still connects to the graph, not NaN.
    ignored = head.losses(logits.requires_grad_(), torch.full((1, 4, 4), 255))["loss_semantic_seg"]
    assert ignored.item() == 0 and ignored.requires_grad
    with pytest.raises(ValueError, match="sem_seg_targets is None"):
        head.check_targets(None)


def test_htc_mask_head_information_flow():
    """Head t's conv features: its convs applied to x + relu(1x1 conv(head t-1's conv features))."""
    torch.manual_seed(0)
    shape = ShapeSpec(channels=4, height=14, width=14)
    first = HTCMaskHead(shape, num_classes=3, conv_dims=[4] * 5, with_prev_stage=False).double()
    second = HTCMaskHead(shape, num_classes=3, conv_dims=[4] * 5, with_prev_stage=True).double()
    x = torch.randn(2, 4, 14, 14, dtype=torch.float64)

    def convs(head, y):
        for conv in head.conv_norm_relus:
            y = F.relu(F.conv2d(y, conv.weight, conv.bias, padding=1))
        return y

    f1 = first.mask_features(x)
    assert torch.allclose(f1, convs(first, x), atol=1e-12)
    proj = second.prev_stage_proj
    expected = convs(second, x + F.relu(F.conv2d(f1, proj.weight, proj.bias)))
    f2 = second.mask_features(x, f1)
    assert torch.allclose(f2, expected, atol=1e-12)
    assert not torch.allclose(f2, convs(second, x), atol=1e-3)  # the flow is not negligible here
    assert torch.allclose(second.predict(f2), second.predictor(F.relu(second.deconv(f2))), atol=1e-12)
    with pytest.raises(ValueError, match="prev_features"):
        second.mask_features(x)
    with pytest.raises(ValueError, match="mask_features"):
        second.layers(x)


def test_heads_take_a_conv_norm():
    semantic = FusedSemanticHead(FPN, in_features=list(FPN), fusion_level="p3", num_classes=5, conv_dim=32,
                                 norm="GN")
    context = GlobalContextHead(FPN, in_feature="p6", num_classes=7, conv_dim=32, norm="GN")
    mask = SCNetMaskHead(ShapeSpec(channels=4, height=14, width=14), num_classes=3, conv_dims=[32] * 5,
                         conv_norm="GN")
    assert semantic(fpn_features())[0].shape == (2, 5, 8, 8)
    assert mask.layers(torch.randn(2, 4, 14, 14)).shape == (2, 3, 28, 28)
    for head, num_convs in ((semantic, 4), (context, 4), (mask, 4)):
        norms = [m for m in head.modules() if isinstance(m, torch.nn.GroupNorm)]
        assert len(norms) == num_convs


def test_semantic_box_features_are_the_mask_resolution_features_averaged_without_keeping_them():
    """semantic_box_pool="from_mask_resolution": the 14 x 14 semantic RoI features averaged to 7 x 7, as
    the released code's adaptive_avg_pool2d, without autograd keeping the 14 x 14 input in training
    (measured: 205 MB per stage for 512 RoIs of 2 images), and by adaptive_avg_pool2d at inference."""
    from cascades.modeling.semantic_cascade_roi_heads import _average_down

    x = torch.randn(6, 4, 14, 14, requires_grad=True)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        y = _average_down(x, 7)
    assert kept == []
    expected = F.adaptive_avg_pool2d(x, 7)
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=0)
    assert torch.equal(y[0, 0, 2, 3], x[0, 0, 4:6, 6:8].mean())
    weights = torch.randn_like(y)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(grad, expected_grad, atol=1e-7, rtol=0)
    # Sizes that do not divide the input, and inference (parity with mmdetection bit for bit):
    # adaptive_avg_pool2d itself.
    torch.testing.assert_close(_average_down(x, (5, 3)), F.adaptive_avg_pool2d(x, (5, 3)), atol=0, rtol=0)
    with torch.no_grad():
        assert torch.equal(_average_down(x, 7), F.adaptive_avg_pool2d(x, 7))
