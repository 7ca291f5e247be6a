# MNC 5-stage end to end, ResNet-18-FPN(64, GroupNorm), fc 256, from scratch on balloon at short side 256
# (CPU): the small models' recipe (configs/common/small_recipe.py: AdamW lr 1e-3, 500 iterations of 2
# images) with the released code's box-gradient clip of the base (1/512 per delta, in the RPN and across
# the stage bridge), the full box gradient otherwise (box_grad_scale 1). docs/FIDELITY.md, "Training
# from scratch", has what it reaches.
from detectron2.data import DatasetMapper

from ..common.data.balloon import NUM_CLASSES, dataloader
from ..common.models.mnc import model, small_mnc
from ..common.small_recipe import lr_multiplier, optimizer, train

model = small_mnc(model, NUM_CLASSES)
# MNC has no semantic branch: the plain mapper, without derived semantic maps.
dataloader.train.mapper._target_ = DatasetMapper
train.output_dir = "./output/balloon_mnc_R_18_FPN_small"
