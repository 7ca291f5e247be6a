# coco128-seg (96 COCO train2017 images, 80 classes, 71 present) with balloon's small CPU set-up.
from .balloon import dataloader

dataloader.train.dataset.names = "coco128_seg_train"
# No separate split: evaluating on the training images is a fit check, not a benchmark.
dataloader.test.dataset.names = "coco128_seg_train"

NUM_CLASSES = 80
SEMANTIC_NUM_CLASSES = NUM_CLASSES + 1  # derived maps: background + things
