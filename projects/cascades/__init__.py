"""detectron2-cascades: multi-stage instance segmentation cascades (MNC, SCNet, HTC) for detectron2."""

__version__ = "0.1.0"
