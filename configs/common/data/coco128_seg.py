# coco128-seg (COCO train2017 images, 80 classes) with balloon's small CPU set-up, split by image id
# (cascades.data.builtin.coco128_seg_split; docs/DATASETS.md gives each side's images and instances).
from .balloon import dataloader

dataloader.train.dataset.names = "coco128_seg_train"
dataloader.test.dataset.names = "coco128_seg_val"

NUM_CLASSES = 80
SEMANTIC_NUM_CLASSES = NUM_CLASSES + 1  # derived maps: background + things
