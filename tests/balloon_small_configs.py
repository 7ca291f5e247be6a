"""The balloon small configs that tests build models from, by family: one table for every test module
(tests/ is on pytest's python path, pyproject.toml)."""
import os

from detectron2.config import LazyConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALLOON_SMALL = {
    "mask_rcnn": "configs/Balloon/mask_rcnn_R_18_FPN_small.py",
    "cascade": "configs/Balloon/cascade_mask_rcnn_R_18_FPN_small.py",
    "cascade_semantic": "configs/Balloon/cascade_mask_rcnn_semantic_R_18_FPN_small.py",
    "htc": "configs/Balloon/htc_R_18_FPN_small.py",
    "scnet": "configs/Balloon/scnet_R_18_FPN_small.py",
    "mnc": "configs/Balloon/mnc_R_18_FPN_small.py",
}


def load_balloon_small(family: str):
    """The LazyConfig of ``family``'s balloon small config."""
    return LazyConfig.load(os.path.join(REPO, BALLOON_SMALL[family]))
