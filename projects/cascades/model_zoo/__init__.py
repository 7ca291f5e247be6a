"""Configs and published checkpoints of the project, with detectron2.model_zoo's API."""

from .model_zoo import get, get_checkpoint_url, get_config, get_config_file

__all__ = ["get", "get_checkpoint_url", "get_config", "get_config_file"]
