# COCO 2017 for HTC/SCNet as released: 1333x800, horizontal flip only, 16 images per batch, with
# COCO-stuff label maps for the semantic branch (derived from instance masks if they are absent).
from detectron2.model_zoo import get_config

from cascades.data import SemanticDatasetMapper

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "coco_2017_train_semantic"
dataloader.train.mapper._target_ = SemanticDatasetMapper
dataloader.train.mapper.augmentations[0].short_edge_length = 800
dataloader.train.total_batch_size = 16
