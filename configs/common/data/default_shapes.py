"""Data for the generated default dataset (cascades.data.default_shapes): 256x256 images, 5 classes."""

from omegaconf import OmegaConf

import cascades.data.default_shapes  # noqa: F401  registers cascades_shapes_{train,val}
import detectron2.data.transforms as T
from cascades.evaluation import build_evaluator
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)

dataloader = OmegaConf.create()

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cascades_shapes_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=(224, 256, 288), sample_style="choice", max_size=512),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=True,
        # Occluded shapes can have holes, which polygons cannot express: masks are stored as RLE.
        instance_mask_format="bitmask",
    ),
    total_batch_size=2,
    num_workers=1,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cascades_shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=256, max_size=512)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=1,
)

dataloader.evaluator = L(build_evaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${train.output_dir}/inference",
)
