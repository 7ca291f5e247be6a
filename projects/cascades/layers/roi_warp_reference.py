"""A pure-PyTorch RoI warp, written independently of the compiled kernels, for tests and benchmarks.

It gathers the four neighbours of every sample with advanced indexing and lets autograd differentiate
through the sample coordinates, so it gives feature AND box gradients. It follows the same out-of-map
rule as :func:`cascades.layers.roi_warp` (torchvision's), but costs memory proportional to four times
the output and runs far slower: it exists to check the kernels, not to be used in models.
"""

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["roi_warp_reference"]


def _sample_coordinates(start: Tensor, length: Tensor, cells: int, offset: float) -> Tensor:
    steps = torch.arange(cells, dtype=start.dtype, device=start.device) + offset
    return start[:, None] + steps[None, :] * (length / cells)[:, None]


def _neighbours(coord: Tensor, size: int):
    """Clamped coordinate, its lower/upper integer neighbours and whether it is inside [-1, size]."""
    inside = (coord >= -1) & (coord <= size)
    coord = coord.clamp(min=0)
    low = coord.detach().floor().long()
    at_border = low >= size - 1
    low = low.clamp(max=size - 1)
    coord = torch.where(at_border, low.to(coord.dtype), coord)
    high = torch.where(at_border, low, low + 1)
    return coord, low, high, inside


def roi_warp_reference(
    input: Tensor,
    rois: Tensor,
    output_size: Union[int, Tuple[int, int]],
    spatial_scale: float = 1.0,
    aligned: bool = True,
    pool_size: Optional[int] = None,
    sample_at: str = "center",
) -> Tensor:
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    offset = {"center": 0.5, "start": 0.0}[sample_at]
    shift = 0.5 if aligned else 0.0
    _, _, height, width = input.shape
    batch = rois[:, 0].long()
    x1 = rois[:, 1] * spatial_scale - shift
    y1 = rois[:, 2] * spatial_scale - shift
    roi_w = rois[:, 3] * spatial_scale - shift - x1
    roi_h = rois[:, 4] * spatial_scale - shift - y1
    if not aligned:
        roi_w = torch.where(roi_w > 1, roi_w, torch.ones_like(roi_w))
        roi_h = torch.where(roi_h > 1, roi_h, torch.ones_like(roi_h))
    ys = _sample_coordinates(y1, roi_h, out_h, offset)[:, :, None].expand(-1, -1, out_w)  # K x h x w
    xs = _sample_coordinates(x1, roi_w, out_w, offset)[:, None, :].expand(-1, out_h, -1)
    y, y0, y1_, inside_y = _neighbours(ys, height)
    x, x0, x1_, inside_x = _neighbours(xs, width)
    ly, lx = y - y0.to(y.dtype), x - x0.to(x.dtype)
    hy, hx = 1 - ly, 1 - lx
    features = input.permute(0, 2, 3, 1)  # N x H x W x C: a gather yields K x h x w x C
    b = batch[:, None, None]

    def corner(yi, xi):
        return features[b, yi, xi]

    value = (
        (hy * hx)[..., None] * corner(y0, x0)
        + (hy * lx)[..., None] * corner(y0, x1_)
        + (ly * hx)[..., None] * corner(y1_, x0)
        + (ly * lx)[..., None] * corner(y1_, x1_)
    )
    value = value * (inside_y & inside_x)[..., None].to(value.dtype)
    value = value.permute(0, 3, 1, 2)
    if pool_size and pool_size > 1:
        value = F.max_pool2d(value, pool_size)
    return value.contiguous()
