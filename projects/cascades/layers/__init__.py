from .nms import batched_nms_topk
from .roi_warp import RoIWarp, roi_warp
from .roi_warp_pooler import RoIWarpPooler

__all__ = ["RoIWarp", "RoIWarpPooler", "batched_nms_topk", "roi_warp"]
