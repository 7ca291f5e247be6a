"""``mmdet://<file or URL>``: an mmdetection checkpoint wherever detectron2 takes a checkpoint path.

Registered with detectron2's PathManager when ``cascades`` is imported, so that
``train.init_checkpoint=mmdet://https://download.openmmlab.com/.../scnet_r50_fpn_1x_coco-c3f09857.pth``
works in this project's train_net.py, demo and Predictor, and in detectron2's own
tools.lazyconfig_train_net: the checkpointer asks for a local file and gets the converted one.
"""
import os

from iopath.common.file_io import PathHandler

__all__ = ["MMDET_PREFIX", "MMDetPathHandler", "mmdet_source"]

MMDET_PREFIX = "mmdet://"
# detectron2's checkpointer passes paths through urlparse(...).geturl(), which turns mmdet:///abs/path
# into mmdet:/abs/path: the handler answers to the scheme and takes the rest as the source.
_SCHEME = "mmdet:"


def mmdet_source(path: str) -> str:
    """The file or URL that ``mmdet://<source>`` (or its normalized ``mmdet:/abs/path``) names."""
    source = path[len(_SCHEME):]
    return source[2:] if source.startswith("//") else source


class MMDetPathHandler(PathHandler):
    """Resolves ``mmdet://<source>`` to the cached conversion of ``<source>`` (a path or URL)."""

    def _get_supported_prefixes(self):
        return [_SCHEME]

    def _get_local_path(self, path, force=False, **kwargs):
        from .mmdet_files import converted_checkpoint  # torch is imported only when a checkpoint is used

        self._check_kwargs(kwargs)
        return converted_checkpoint(mmdet_source(path))

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        if "w" in mode or "a" in mode:
            raise ValueError(f"{path}: mmdet:// checkpoints are read-only")
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _exists(self, path, **kwargs):
        source = mmdet_source(path)
        return source.startswith(("http://", "https://")) or os.path.isfile(source)

    def _isfile(self, path, **kwargs):
        return self._exists(path)
