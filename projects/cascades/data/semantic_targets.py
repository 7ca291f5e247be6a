"""Semantic-segmentation targets for the HTC/SCNet semantic branch when a dataset has no stuff maps."""
from typing import Optional, Sequence

import numpy as np
import torch

from detectron2.structures import BitMasks, PolygonMasks, polygons_to_bitmask

__all__ = ["semantic_target_from_instances", "annotation_mask"]

BACKGROUND = 0
IGNORE = 255


def annotation_mask(segmentation, image_shape) -> np.ndarray:
    """A transformed annotation's ``segmentation`` (polygons or a decoded mask) as (H, W) bool."""
    if isinstance(segmentation, list):
        return polygons_to_bitmask(segmentation, *image_shape)
    if isinstance(segmentation, np.ndarray) and segmentation.shape == tuple(image_shape):
        return segmentation.astype(bool)
    raise ValueError(
        f"segmentation must be a list of polygons or an (H, W) array of shape {tuple(image_shape)}, "
        f"got {type(segmentation).__name__}"
    )


def semantic_target_from_instances(
    gt_classes: torch.Tensor,
    gt_masks,
    image_shape: Sequence[int],
    ignore_masks: Optional[Sequence[np.ndarray]] = None,
) -> torch.Tensor:
    """
    Things-only semantic map from instance masks: 0 for background, ``class + 1`` on each instance,
    ``IGNORE`` (255) on ``ignore_masks`` (e.g. crowd regions), whose label is unknown.

    Args:
        gt_classes: (K,) contiguous class ids in [0, num_classes).
        gt_masks: :class:`BitMasks` or :class:`PolygonMasks` with K masks.
        image_shape: (H, W).
        ignore_masks: (H, W) bool arrays.

    Returns:
        (H, W) int64 tensor.
    """
    height, width = image_shape
    if len(gt_classes) != len(gt_masks):
        raise ValueError(f"gt_classes has {len(gt_classes)} entries but gt_masks {len(gt_masks)}")
    if isinstance(gt_masks, PolygonMasks):
        gt_masks = BitMasks.from_polygon_masks(gt_masks, height, width)
    if not isinstance(gt_masks, BitMasks):
        raise ValueError(f"gt_masks must be BitMasks or PolygonMasks, got {type(gt_masks).__name__}")
    if len(gt_classes) and int(gt_classes.max()) + 1 >= IGNORE:
        raise ValueError(f"class ids must be < {IGNORE - 1} to fit the label map")
    target = torch.full((height, width), BACKGROUND, dtype=torch.int64)
    masks = gt_masks.tensor.to("cpu")
    # Overlaps: paint large instances first so that small ones lying on them stay visible.
    for k in torch.argsort(masks.flatten(1).sum(1), descending=True).tolist():
        target[masks[k]] = int(gt_classes[k]) + 1
    for region in ignore_masks or ():
        target[torch.from_numpy(np.asarray(region, dtype=bool))] = IGNORE
    return target
