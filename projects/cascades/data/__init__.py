"""Datasets and mappers of the cascades; importing registers the builtin datasets."""
from . import builtin  # noqa: F401  registers datasets
from . import voc_sbd  # noqa: F401  registers voc_sbd_* when $DETECTRON2_DATASETS/sbd exists
from .dataset_mapper import SemanticDatasetMapper
from .semantic_targets import semantic_target_from_instances

__all__ = ["SemanticDatasetMapper", "semantic_target_from_instances"]
