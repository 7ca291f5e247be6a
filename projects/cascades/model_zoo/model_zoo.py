"""detectron2.model_zoo's API for this project's configs (configs/<Dataset>/<name>.py)."""

import os
from typing import Optional

import torch

from detectron2.config import LazyConfig, instantiate

from ..checkpoint.path_handler import MMDET_PREFIX
from ..engine.checkpoint import Checkpointer
from .mmdet_checkpoints import MMDET_CHECKPOINTS

__all__ = ["get", "get_checkpoint_url", "get_config", "get_config_file"]


class _ModelZooUrls:
    """Config name -> URL of the checkpoint trained with it: mmdetection's published checkpoints for
    the configs under COCO-InstanceSegmentation/mmdet/ (``mmdet://`` converts them on first use).
    detectron2's own names (``detectron2://ImageNetPretrained/...``), URLs and local paths are given to
    ``train.init_checkpoint`` directly and load through the same Checkpointer."""

    # "<Dataset>/<name>" (the config path without .py) -> URL
    CONFIG_PATH_TO_URL = {
        f"COCO-InstanceSegmentation/mmdet/{c.config}": MMDET_PREFIX + c.url for c in MMDET_CHECKPOINTS
    }

    @classmethod
    def query(cls, config_path) -> Optional[str]:
        return cls.CONFIG_PATH_TO_URL.get(config_path.replace(".py", ""))


def _config_roots():
    # An installed package carries configs/ inside model_zoo/ (as detectron2 does); a source checkout
    # (an editable install) has them at the repository root.
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, "configs"), os.path.normpath(os.path.join(here, "..", "..", "..", "configs"))]


def get_config_file(config_path):
    """The path of a config given by its name relative to configs/, e.g. "DefaultShapes/<name>.py"."""
    for root in _config_roots():
        path = os.path.join(root, config_path)
        if os.path.isfile(path):
            return path
    raise RuntimeError(f"{config_path!r} is not in the model zoo (looked under {' and '.join(_config_roots())})")


def get_checkpoint_url(config_path):
    """The URL of the published checkpoint trained with ``config_path``."""
    url = _ModelZooUrls.query(config_path)
    if url is None:
        published = sorted(_ModelZooUrls.CONFIG_PATH_TO_URL) or "none yet"
        raise RuntimeError(f"No published checkpoint for {config_path!r} (published: {published}); train it "
                           "with train_net.py and set train.init_checkpoint to the result")
    return url


def get_config(config_path, trained: bool = False):
    """The LazyConfig of ``config_path``; with ``trained``, ``train.init_checkpoint`` is set to its
    published checkpoint."""
    cfg = LazyConfig.load(get_config_file(config_path))
    if trained:
        cfg.train.init_checkpoint = get_checkpoint_url(config_path)
    return cfg


def get(config_path, trained: bool = False, device: Optional[str] = None):
    """The model of ``config_path`` (in training mode, as detectron2's ``model_zoo.get``) with the
    weights of ``train.init_checkpoint``; with ``trained`` those are the published weights, which must
    fit the model exactly."""
    cfg = get_config(config_path, trained)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = instantiate(cfg.model).to(device)
    Checkpointer(model, strict=trained).load(cfg.train.init_checkpoint)
    return model
