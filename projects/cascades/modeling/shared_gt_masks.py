"""GT bit masks that the proposals matched to them share instead of copying.

detectron2's labelling gives every sampled proposal its matched GT's fields (``gt_masks[matched_idxs]``).
With :class:`PolygonMasks` (detectron2's default ``mask_format``) that copies a few polygons; with
:class:`BitMasks` (``instance_mask_format="bitmask"``, as SBD's masks and the generated shapes use) it
copies a full-image mask per proposal: 512 proposals of an 800 x 800 image are 312 MiB, for each cascade
stage, kept until the mask loss. Measured on SCNet R-50-FPN with two 800 x 800 images, those copies were
about 1.9 GB of its 4.4 GB training peak. :class:`SharedBitMasks` keeps the GT masks once and an index
per proposal; its mask targets (:meth:`crop_and_resize`) are exactly BitMasks'.
"""

from typing import Any, List

import torch

from detectron2.layers import ROIAlign
from detectron2.structures import BitMasks, Instances

__all__ = ["SharedBitMasks", "share_gt_masks"]


class SharedBitMasks(BitMasks):
    """BitMasks whose rows are ``masks[index]``: indexing composes ``index`` and copies no mask.

    ``tensor`` gives the rows as a new tensor (what BitMasks holds); :meth:`crop_and_resize`,
    :meth:`nonempty`, :meth:`area` and ``len`` work from the shared masks."""

    def __init__(self, masks: torch.Tensor, index: torch.Tensor = None):
        masks = torch.as_tensor(masks).to(torch.bool)
        if masks.dim() != 3:
            raise ValueError(f"SharedBitMasks: masks must be N x H x W, got shape {tuple(masks.shape)}")
        self.masks = masks
        self.index = torch.arange(len(masks), device=masks.device) if index is None else index
        self.image_size = masks.shape[1:]

    @property
    def tensor(self) -> torch.Tensor:
        return self.masks[self.index]

    def to(self, *args: Any, **kwargs: Any) -> "SharedBitMasks":
        masks = self.masks.to(*args, **kwargs)
        return SharedBitMasks(masks, self.index.to(masks.device))

    @property
    def device(self) -> torch.device:
        return self.masks.device

    def __getitem__(self, item) -> "SharedBitMasks":
        index = self.index[item].reshape(-1) if isinstance(item, int) else self.index[item]
        if index.dim() != 1:
            raise IndexError(f"SharedBitMasks: indexing with {item!r} does not give a list of masks")
        return SharedBitMasks(self.masks, index)

    def __len__(self) -> int:
        return len(self.index)

    def nonempty(self) -> torch.Tensor:
        return self.masks.flatten(1).any(dim=1)[self.index]

    def area(self) -> torch.Tensor:
        """The number of pixels of each mask."""
        return self.masks.flatten(1).sum(dim=1)[self.index]

    def crop_and_resize(self, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
        """:meth:`BitMasks.crop_and_resize`: the same RoIAlign, on the shared masks with each box's
        mask as its batch index."""
        if len(boxes) != len(self):
            raise ValueError(f"SharedBitMasks.crop_and_resize: {len(boxes)} boxes for {len(self)} masks")
        rois = torch.cat([self.index.to(boxes.dtype)[:, None], boxes], dim=1).to(self.device)
        masks = self.masks.to(torch.float32)[:, None]
        return ROIAlign((mask_size, mask_size), 1.0, 0, aligned=True).forward(masks, rois).squeeze(1) >= 0.5


def share_gt_masks(targets: List[Instances]) -> List[Instances]:
    """``targets`` with their BitMasks ``gt_masks`` as :class:`SharedBitMasks` (shallow copies; other
    fields and other mask types as they are)."""
    shared = []
    for t in targets:
        masks = t.get("gt_masks") if t.has("gt_masks") else None
        if type(masks) is BitMasks:
            t = Instances(t.image_size, **t.get_fields())
            t.gt_masks = SharedBitMasks(masks.tensor)
        shared.append(t)
    return shared
