from .roi_warp import RoIWarp, roi_warp
from .roi_warp_pooler import RoIWarpPooler

__all__ = ["RoIWarp", "RoIWarpPooler", "roi_warp"]
