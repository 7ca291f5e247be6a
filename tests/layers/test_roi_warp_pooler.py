"""RoIWarpPooler against detectron2's ROIPooler (ROIAlignV2, one sample per bin), with box gradients."""

import pytest
import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes

from cascades.layers import NonFiniteBoxError, RoIWarpPooler, roi_warp


def image_boxes(num, size, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g, dtype=torch.float64) * size * 0.8
    wh = torch.rand(num, 2, generator=g, dtype=torch.float64) * size * 0.6 + 4
    return torch.cat([xy, xy + wh], dim=1)


def fpn_features(size, dtype=torch.float32):
    # Strides 4..32 for a `size` x `size` image, 2 images, 3 channels.
    return [torch.randn(2, 3, size // s, size // s, dtype=dtype) for s in (4, 8, 16, 32)]


def test_fpn_levels_match_roipooler():
    features = fpn_features(256)
    boxes = [Boxes(image_boxes(30, 256, 0)), Boxes(image_boxes(20, 256, 1))]
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
    ours = RoIWarpPooler(7, scales, canonical_box_size=64, canonical_level=3)(features, boxes)
    theirs = ROIPooler(7, scales, sampling_ratio=1, pooler_type="ROIAlignV2", canonical_box_size=64,
                       canonical_level=3)(features, boxes)
    # float32: torchvision computes the sample positions in another order, hence rounding differences.
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_single_level_with_pool_matches_warp_then_pool():
    features = [torch.randn(2, 3, 16, 16, dtype=torch.float64)]  # float32 boxes are cast, like ROIAlign
    boxes = [Boxes(image_boxes(5, 256, 2)), Boxes(image_boxes(3, 256, 3))]
    pooler = RoIWarpPooler(28, (1 / 16,), pool_size=2)
    out = pooler(features, boxes)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b.tensor], 1) for i, b in enumerate(boxes)])
    assert out.shape == (8, 3, 14, 14)
    torch.testing.assert_close(out, roi_warp(features[0], rois.double(), 28, 1 / 16, pool_size=2))


def test_box_gradients_reach_every_level():
    features = fpn_features(256)
    tensors = [image_boxes(30, 256, 4).float().requires_grad_(True), image_boxes(12, 256, 5).float().requires_grad_(True)]
    pooler = RoIWarpPooler(7, (1 / 4, 1 / 8, 1 / 16, 1 / 32), canonical_box_size=64, canonical_level=3)
    pooler(features, [Boxes(t) for t in tensors]).pow(2).sum().backward()
    for t in tensors:
        assert t.grad is not None and (t.grad.abs().sum(dim=1) > 0).all()


def test_pool_size_must_divide_output_size():
    with pytest.raises(ValueError, match="divisible by pool_size"):
        RoIWarpPooler(7, (1 / 16,), pool_size=2)


def test_no_images():
    pooler = RoIWarpPooler(14, (1 / 16,), pool_size=2)
    assert pooler([torch.randn(0, 3, 4, 4)], []).shape == (0, 3, 7, 7)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("levels", [1, 4])
def test_non_finite_box_is_refused(value, levels):
    """ROIPooler's level assignment casts a NaN box to no level: zero features and zero gradient."""
    features = fpn_features(256)[:levels]
    scales = (1 / 4, 1 / 8, 1 / 16, 1 / 32)[:levels]
    tensors = [image_boxes(6, 256, 0).float(), image_boxes(5, 256, 1).float()]
    tensors[1][3, 2] = value
    pooler = RoIWarpPooler(7, scales, canonical_box_size=64, canonical_level=3)
    with pytest.raises(NonFiniteBoxError, match=r"box 3 of image 1 is not finite: \(.*, (nan|inf|-inf), "):
        pooler(features, [Boxes(t) for t in tensors])


def test_boxes_are_checked_once_for_all_levels(monkeypatch):
    """The pooler's one check (one host copy, a sync on CUDA) replaces one per level in roi_warp."""
    import importlib

    module = importlib.import_module("cascades.layers.roi_warp")  # the attribute is the function
    calls = []
    monkeypatch.setattr(module, "_check_roi_values", lambda *args: calls.append(args))
    RoIWarpPooler(7, (1 / 4, 1 / 8, 1 / 16, 1 / 32))(fpn_features(256), [Boxes(image_boxes(9, 256, 2).float())] * 2)
    assert calls == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(scales=(float("nan"),)), ValueError, r"scales\[0\] must be a finite number > 0"),
    (dict(scales=(1 / 4, 0.0)), ValueError, r"scales\[1\] must be a finite number > 0"),
    (dict(scales=("1/16",)), TypeError, r"scales\[0\] must be a finite number > 0"),
    (dict(scales=(1 / 16,), aligned="no"), TypeError, "aligned must be True or False"),
])
def test_bad_scales_and_aligned(kwargs, error, match):
    with pytest.raises(error, match=match):
        RoIWarpPooler(7, **kwargs)
