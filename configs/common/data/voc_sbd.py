# PASCAL VOC 2012 + SBD instance masks (cascades.data.voc_sbd), the MNC paper's setting: shorter side
# 600 (longer at most 1000), horizontal flip, no multi-scale; 8 images per batch (1 per GPU on 8 GPUs);
# evaluated by mAP^r (SDS evaluator, chosen from the dataset's metadata).
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

import cascades.data  # noqa: F401  registers voc_sbd_* when $DETECTRON2_DATASETS/sbd exists
from cascades.evaluation import build_evaluator

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.dataset.names = "voc_sbd_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.instance_mask_format = "bitmask"  # SBD masks are RLE
dataloader.train.total_batch_size = 8
dataloader.test.dataset.names = "voc_sbd_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000)]
dataloader.evaluator = L(build_evaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${train.output_dir}/inference",
)
