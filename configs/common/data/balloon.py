# balloon (detectron2's tutorial data, 1 class) at short side 256, for CPU-sized studies and tests.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

import cascades.data  # noqa: F401  registers balloon_* from $DETECTRON2_DATASETS
from cascades.data import SemanticDatasetMapper

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "balloon_train"
dataloader.train.mapper._target_ = SemanticDatasetMapper
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=256, max_size=448),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "balloon_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=256, max_size=448)
]
dataloader.test.num_workers = 0

NUM_CLASSES = 1
SEMANTIC_NUM_CLASSES = NUM_CLASSES + 1  # derived maps: background + things
