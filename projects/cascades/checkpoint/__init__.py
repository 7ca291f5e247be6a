"""Checkpoint formats: mmdetection's SCNet, HTC and Cascade Mask R-CNN checkpoints for our models.
The model zoo and the engine use this package; it uses neither."""
from .mmdet_conversion import (
    CLASS_SPECIFIC_KEYS,
    MMDetConversionError,
    MMDetModel,
    check_fits,
    convert_mmdet_state_dict,
    describe_mmdet_model,
    fit_to_model,
    mmdet_tensor_names,
    refuse_mmdet_layout,
    refuse_mmdet_state_dict,
)
from .mmdet_files import CONVERSION_KEY, converted_checkpoint, load_mmdet_state_dict
from .path_handler import MMDET_PREFIX, MMDetPathHandler

__all__ = [k for k in globals().keys() if not k.startswith("_")]
