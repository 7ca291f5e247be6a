"""Registers the small real datasets of the datasets root and COCO with stuff maps.

Registration is idempotent and skips datasets whose folder is missing; the datasets load lazily.
``make datasets`` (:mod:`cascades.data.prepare`) fetches balloon and coco128-seg into this layout.

coco128-seg is one file of COCO train2017 images; its split is fixed by image id (:func:`coco128_seg_split`),
so that it is the same for any copy of it (the public archive's 128 images, or fewer). Each split's own
json, derived into :func:`cascades.data.storage.cache_root` when it loads, is what COCO's evaluator reads.
"""
import hashlib
import json
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, register_coco_instances

from .storage import cache_root, datasets_root, write_json

__all__ = ["coco128_seg_split", "register_all", "register_coco_semantic", "register_split"]

logger = logging.getLogger(__name__)

# name -> (json file, image folder), relative to the datasets root
_SMALL_DATASETS = {
    "balloon_train": ("balloon/train.json", "balloon/train"),
    "balloon_val": ("balloon/val.json", "balloon/val"),
}
_COCO128_SEG = ("coco128-seg/train.json", "coco128-seg/images")


def coco128_seg_split(image_id: int) -> str:
    """The split of a coco128-seg image: "val" when its COCO id modulo 4 is 1, else "train". Any residue
    would do; 1 keeps the grayscale and the two unannotated photos of the first 96 in training, where
    tests use them."""
    return "val" if image_id % 4 == 1 else "train"


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _split_json(source: str, split: str, split_of) -> dict:
    with open(source) as f:
        data = json.load(f)
    images = [image for image in data["images"] if split_of(image["id"]) == split]
    ids = {image["id"] for image in images}
    return {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}


def register_split(name: str, json_file: str, image_root: str, split: str, split_of=coco128_seg_split) -> None:
    """Registers ``name``: the images of COCO json ``json_file`` whose id ``split_of`` maps to ``split``.
    Their own json (the file with those images and their annotations only, what COCO's evaluator reads)
    is the metadata's ``json_file``: each load derives it into the cache and rewrites it when it differs."""
    digest = hashlib.sha1(os.path.abspath(json_file).encode()).hexdigest()[:16]
    split_file = os.path.join(cache_root(), "splits", digest, f"{name}.json")

    def load():
        data = _split_json(json_file, split, split_of)
        if _read_json(split_file) != data:
            write_json(split_file, data)
        return load_coco_json(split_file, image_root, name)

    DatasetCatalog.register(name, load)
    # generated: the json appears on the first load (see cascades.engine.config.check_datasets).
    MetadataCatalog.get(name).set(json_file=split_file, image_root=image_root, evaluator_type="coco",
                                  generated=True)


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


def _present(name: str, json_file: str, image_root: str) -> bool:
    if os.path.isfile(json_file) and os.path.isdir(image_root):
        return True
    logger.info(f"{name}: {json_file} or {image_root} missing, not registered")
    return False


def register_all(root: str = None) -> None:
    """Registers balloon_{train,val}, coco128_seg_{train,val} (the ones found under ``root``, by default
    the datasets root) and coco_2017_train_semantic."""
    root = datasets_root() if root is None else root
    for name, (json_file, image_root) in _SMALL_DATASETS.items():
        json_file, image_root = os.path.join(root, json_file), os.path.join(root, image_root)
        if name not in DatasetCatalog and _present(name, json_file, image_root):
            register_coco_instances(name, {}, json_file, image_root)
    json_file, image_root = (os.path.join(root, p) for p in _COCO128_SEG)
    for split in ("train", "val"):
        name = f"coco128_seg_{split}"
        if name not in DatasetCatalog and _present(name, json_file, image_root):
            register_split(name, json_file, image_root, split)
    register_coco_semantic(root, "coco_2017_train")


register_all()
