"""``mmdet://<file or URL>``: an mmdetection checkpoint wherever detectron2 takes a checkpoint path.

Registered with detectron2's PathManager when ``cascades`` is imported, so that
``train.init_checkpoint=mmdet://https://download.openmmlab.com/.../scnet_r50_fpn_1x_coco-c3f09857.pth``
works in this project's train_net.py, demo and Predictor, and in detectron2's own
tools.lazyconfig_train_net: the checkpointer asks for a local file and gets the converted one.
"""
import os

from iopath.common.file_io import PathHandler

__all__ = ["MMDET_PREFIX", "MMDetPathHandler"]

MMDET_PREFIX = "mmdet://"


class MMDetPathHandler(PathHandler):
    """Resolves ``mmdet://<source>`` to the cached conversion of ``<source>`` (a path or URL)."""

    def _get_supported_prefixes(self):
        return [MMDET_PREFIX]

    def _get_local_path(self, path, force=False, **kwargs):
        from .mmdet_files import converted_checkpoint  # torch is imported only when a checkpoint is used

        self._check_kwargs(kwargs)
        return converted_checkpoint(path[len(MMDET_PREFIX):])

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        if "w" in mode or "a" in mode:
            raise ValueError(f"{path}: mmdet:// checkpoints are read-only")
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _exists(self, path, **kwargs):
        source = path[len(MMDET_PREFIX):]
        return source.startswith(("http://", "https://")) or os.path.isfile(source)

    def _isfile(self, path, **kwargs):
        return self._exists(path)
