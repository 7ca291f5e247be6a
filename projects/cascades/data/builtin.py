"""Registers the small real datasets of ``$DETECTRON2_DATASETS`` and COCO with stuff maps.

Registration is idempotent and skips datasets whose folder is missing; the datasets load lazily.
"""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

__all__ = ["register_all", "register_coco_semantic"]

logger = logging.getLogger(__name__)

# name -> (json file, image folder), relative to the datasets root
_SMALL_DATASETS = {
    "balloon_train": ("balloon/train.json", "balloon/train"),
    "balloon_val": ("balloon/val.json", "balloon/val"),
    "coco128_seg_train": ("coco128-seg/train.json", "coco128-seg/images"),
}


def _datasets_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_coco_semantic(root: str, base_name: str = "coco_2017_train") -> None:
    """
    Registers ``<base_name>_semantic``: detectron2's COCO split with each image's COCO-stuff label
    map (``<root>/coco/stuffthingmaps/<split>/<image>.png``, 0..181 and 255 as released with HTC)
    as ``sem_seg_file_name``. Without that folder the dicts have no map and
    :class:`SemanticDatasetMapper` derives things-only maps from the instance masks instead.
    """
    name = f"{base_name}_semantic"
    if name in DatasetCatalog.list():
        return
    split = "train2017" if base_name.endswith("train") else "val2017"
    map_dir = os.path.join(root, "coco", "stuffthingmaps", split)

    def load():
        dicts = DatasetCatalog.get(base_name)
        if not os.path.isdir(map_dir):
            logger.warning(f"{map_dir} not found: semantic targets will come from instance masks")
            return dicts
        for d in dicts:
            stem = os.path.splitext(os.path.basename(d["file_name"]))[0]
            d["sem_seg_file_name"] = os.path.join(map_dir, stem + ".png")
        return dicts

    DatasetCatalog.register(name, load)
    base_meta = MetadataCatalog.get(base_name).as_dict()
    base_meta.pop("name")
    MetadataCatalog.get(name).set(**base_meta, ignore_label=255)


def register_all(root: str = None) -> None:
    root = _datasets_root() if root is None else root
    for name, (json_file, image_root) in _SMALL_DATASETS.items():
        json_file, image_root = os.path.join(root, json_file), os.path.join(root, image_root)
        if name in DatasetCatalog.list():
            continue
        if not (os.path.isfile(json_file) and os.path.isdir(image_root)):
            logger.info(f"{name}: {json_file} or {image_root} missing, not registered")
            continue
        register_coco_instances(name, {}, json_file, image_root)
    register_coco_semantic(root, "coco_2017_train")


register_all()
