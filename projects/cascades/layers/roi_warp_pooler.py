"""RoIWarpPooler: detectron2's ROIPooler with RoI warping, so that pooled features carry box gradients."""

from typing import Optional, Tuple, Union

from detectron2.modeling.poolers import ROIPooler
from torch import nn

from .roi_warp import RoIWarp, _pair

__all__ = ["RoIWarpPooler"]


class RoIWarpPooler(ROIPooler):
    """A drop-in for :class:`detectron2.modeling.poolers.ROIPooler` whose level poolers are :class:`RoIWarp`.

    Boxes are assigned to FPN levels exactly as by ROIPooler (one level for C4 backbones). The warp grid is
    ``output_size``; with ``pool_size = k`` it is max-pooled k x k, so the output is ``output_size / k``.
    Gradients flow into the boxes' tensors (``Boxes.tensor``), which is what MNC's end-to-end training needs.
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
