"""Training, checkpointing, inference and cluster helpers around detectron2's engine."""

from .checkpoint import Checkpointer, CheckpointMismatchError
from .config import apply_overrides, check_datasets, load_config
from .optim import ClippedSGD
from .predictor import Predictor
from .trainer import do_test, do_train

__all__ = [k for k in globals().keys() if not k.startswith("_")]
