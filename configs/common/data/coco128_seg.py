# coco128-seg (96 COCO train2017 images, 80 classes, 71 present) at short side 256, for CPU-sized studies and tests.
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

import cascades.data  # noqa: F401  registers coco128_seg_train from $DETECTRON2_DATASETS
from cascades.data import SemanticDatasetMapper

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "coco128_seg_train"
dataloader.train.mapper._target_ = SemanticDatasetMapper
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=256, max_size=448),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 2
dataloader.train.num_workers = 0
dataloader.test.dataset.names = "coco128_seg_train"  # no separate split: a fit check, not a benchmark
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=256, max_size=448)
]
dataloader.test.num_workers = 0

NUM_CLASSES = 80
SEMANTIC_NUM_CLASSES = NUM_CLASSES + 1  # derived maps: background + things
