"""RoIWarpPooler: detectron2's ROIPooler with RoI warping, so that pooled features carry box gradients."""

from typing import List, Optional, Tuple, Union

import numpy as np
import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes
from torch import nn

from .roi_warp import NonFiniteBoxError, RoIWarp, _check_aligned, _check_spatial_scale, _pair

__all__ = ["RoIWarpPooler"]


class RoIWarpPooler(ROIPooler):
    """A drop-in for :class:`detectron2.modeling.poolers.ROIPooler` whose level poolers are :class:`RoIWarp`.

    Boxes are assigned to FPN levels exactly as by ROIPooler (one level for C4 backbones). The warp grid is
    ``output_size``; with ``pool_size = k`` it is max-pooled k x k, so the output is ``output_size / k``.
    Gradients flow into the boxes' tensors (``Boxes.tensor``), which is what MNC's end-to-end training needs.
    A box with a NaN or infinite coordinate raises :class:`NonFiniteBoxError` (ROIPooler's level assignment
    would cast it to no level and give it zero features and zero gradient).
    """

    def __init__(
        self,
        output_size: Union[int, Tuple[int, int]],
        scales,
        pool_size: Optional[int] = None,
        aligned: bool = True,
        sample_at: str = "center",
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ):
        warp_size = _pair(output_size, "output_size")
        # Before ROIPooler takes their logarithm.
        scales = [_check_spatial_scale(scale, f"scales[{i}]") for i, scale in enumerate(scales)]
        aligned = _check_aligned(aligned)
        k = pool_size or 1
        if warp_size[0] % k or warp_size[1] % k:
            raise ValueError(f"RoIWarpPooler: output_size {warp_size} must be divisible by pool_size {k}")
        # ROIPooler's constructor validates the pyramid and sets the level mapping; forward() then reads
        # self.output_size as the size of what the level poolers return, i.e. the pooled size.
        super().__init__(
            (warp_size[0] // k, warp_size[1] // k),
            scales,
            sampling_ratio=1,
            pooler_type="ROIAlignV2",
            canonical_box_size=canonical_box_size,
            canonical_level=canonical_level,
        )
        self.warp_size = warp_size
        self.level_poolers = nn.ModuleList(
            RoIWarp(warp_size, spatial_scale=scale, aligned=aligned, pool_size=pool_size, sample_at=sample_at)
            for scale in scales
        )
        for pooler in self.level_poolers:
            pooler._rois_checked_by_caller = True

    def forward(self, x: List[torch.Tensor], box_lists: List[Boxes]) -> torch.Tensor:
        _check_finite_boxes(box_lists)
        return super().forward(x, box_lists)


def _check_finite_boxes(box_lists: List[Boxes]):
    """Raises NonFiniteBoxError naming the first non-finite box. One host copy of all the boxes (on CUDA,
    one synchronization), which replaces the level poolers' own checks, one per level."""
    if not box_lists or torch.compiler.is_compiling():
        return
    boxes = torch.cat([b.tensor.detach() for b in box_lists]).to("cpu", torch.float64).numpy()
    finite = np.isfinite(boxes).all(axis=1)
    if finite.all():
        return
    k = int(np.flatnonzero(~finite)[0])
    sizes = np.cumsum([len(b) for b in box_lists])
    image = int(np.searchsorted(sizes, k, side="right"))
    index = k - (int(sizes[image - 1]) if image else 0)
    raise NonFiniteBoxError(f"RoIWarpPooler: box {index} of image {image} is not finite: "
                            f"{tuple(boxes[k].tolist())}")
