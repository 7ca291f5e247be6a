"""Training, checkpointing, inference and cluster helpers around detectron2's engine."""

from .checkpoint import Checkpointer, CheckpointMismatchError, CheckpointReadError
from .config import apply_overrides, check_datasets, check_training_settings, load_config
from .failures import TrainingDiverged, TrainingFailure, TrainingImageError
from .optim import ClippedSGD
from .predictor import Predictor
from .trainer import do_test, do_train

__all__ = [k for k in globals().keys() if not k.startswith("_")]
