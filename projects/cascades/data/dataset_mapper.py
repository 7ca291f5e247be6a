"""DatasetMapper that always provides the "sem_seg" target HTC/SCNet's semantic branch trains on."""
import copy

import torch

from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.structures import BitMasks

from .semantic_targets import annotation_mask, semantic_target_from_instances

__all__ = ["SemanticDatasetMapper"]


class SemanticDatasetMapper(DatasetMapper):
    """
    :class:`DatasetMapper` for models with a semantic branch. When the dataset dict has a
    ``sem_seg_file_name`` (COCO-stuff "stuffthingmaps"), detectron2 loads and transforms that map.
    Otherwise, in training, the map is derived from the transformed instance annotations: things
    only, background 0, ``class + 1`` on instances, 255 (ignored) on crowd regions. So HTC and SCNet
    train on any instance-segmentation dataset.
    """

    @configurable
    def __init__(self, is_train: bool, **kwargs):
        super().__init__(is_train, **kwargs)
        if is_train and not self.use_instance_mask:
            raise ValueError("use_instance_mask must be True: semantic targets are built from masks")

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        crowd_regions = [
            annotation_mask(
                utils.transform_instance_annotations(copy.deepcopy(obj), transforms, image_shape)[
                    "segmentation"
                ],
                image_shape,
            )
            for obj in dataset_dict["annotations"]
            if obj.get("iscrowd", 0) and "segmentation" in obj
        ]
        super()._transform_annotations(dataset_dict, transforms, image_shape)
        if "sem_seg" not in dataset_dict:
            instances = dataset_dict["instances"]
            # detectron2 adds no gt_masks field to an image without (non-crowd) instances.
            gt_masks = (
                instances.gt_masks
                if instances.has("gt_masks")
                else BitMasks(torch.zeros((0, *image_shape), dtype=torch.bool))
            )
            dataset_dict["sem_seg"] = semantic_target_from_instances(
                instances.gt_classes, gt_masks, image_shape, crowd_regions
            )

    def __call__(self, dataset_dict):
        if self.is_train and "annotations" not in dataset_dict:
            # An image without annotations is an image without objects: all background.
            dataset_dict = {**dataset_dict, "annotations": []}
        return super().__call__(dataset_dict)
