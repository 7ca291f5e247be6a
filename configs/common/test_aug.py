# test.aug: test-time augmentation (detectron2's TEST.AUG), used by train_net.py --tta (and when
# test.aug.enabled) and Predictor(cfg, tta=True). These are the released SCNet TTA's (short sides 600 to
# 1400 and their flips) for a model tested at short side 800, max size 1333; a config tested at another size
# builds its own with scaled_test_aug(short_edge, max_size), which is also what a config without test.aug gets.
# Keys: enabled, min_sizes, max_size, flip, merge ("detectron2": boxes merged, then masks on them;
# "mmdetection2": the released per-RoI averaging). docs/TTA.md explains both.
from cascades.engine.test_aug import scaled_test_aug

test = dict(aug=scaled_test_aug(short_edge=800, max_size=1333))
