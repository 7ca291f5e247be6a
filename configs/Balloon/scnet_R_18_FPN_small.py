# SCNet, ResNet-18-FPN(64) from scratch on balloon at short side 256: trains on a CPU
# (configs/common/small_recipe.py, docs/SMALL_MODELS.md).
from ..common.data.balloon import NUM_CLASSES, SEMANTIC_NUM_CLASSES, dataloader
from ..common.models.cascade_mask_rcnn_semantic_fpn import small_model
from ..common.models.scnet_fpn import model
from ..common.small_recipe import lr_multiplier, optimizer, train

model = small_model(model, NUM_CLASSES, SEMANTIC_NUM_CLASSES)
train.output_dir = "./output/balloon_scnet_R_18_FPN_small"
