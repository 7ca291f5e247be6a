from .nms import batched_nms_topk
from .roi_warp import NonFiniteBoxError, RoIWarp, roi_warp
from .roi_warp_pooler import RoIWarpPooler

__all__ = ["NonFiniteBoxError", "RoIWarp", "RoIWarpPooler", "batched_nms_topk", "roi_warp"]
