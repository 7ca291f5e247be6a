"""detectron2-cascades: multi-stage instance segmentation cascades (MNC, SCNet, HTC) for detectron2."""

__version__ = "0.1.0"


def _register_path_handlers():
    # mmdet://<checkpoint> for train.init_checkpoint, wherever detectron2 resolves checkpoint paths.
    from detectron2.utils.file_io import PathManager

    from .checkpoint.path_handler import MMDetPathHandler

    handler = MMDetPathHandler()
    if not set(handler._get_supported_prefixes()) & set(PathManager._path_handlers):
        PathManager.register_handler(handler)


_register_path_handlers()
