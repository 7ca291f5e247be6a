"""PASCAL VOC 2012 images with the SBD instance annotations (Hariharan et al. 2011), the MNC paper's data.

Expected layout: the ``dataset`` folder of SBD's release (``benchmark_RELEASE/dataset``) as
``$DETECTRON2_DATASETS/sbd``::

    sbd/img/<id>.jpg     sbd/inst/<id>.mat (GTinst)     sbd/cls/<id>.mat (GTcls)
    sbd/train.txt        sbd/val.txt                    (one image id a line)

``GTinst.Segmentation`` is the instance map (0 background, k for the k-th instance; other values,
e.g. 255, are void), ``GTinst.Categories`` the instances' classes (1..20). ``GTcls.Segmentation``
is the class map: each instance's class is checked against it, a mismatch meaning a broken file.
Registered: ``voc_sbd_train`` and ``voc_sbd_val``, masks as compressed RLE (use
``instance_mask_format="bitmask"`` in the mapper), evaluated by the SDS evaluator (mAP^r).
Note: the released MNC code trains on 5623 and tests on 5732 images of its own lists; SBD's own
train.txt / val.txt (8498 / 2857 images) are what this registers; pass other list files to
:func:`register_voc_sbd` to use other splits.
"""
import logging
import os
from typing import Dict, List, Tuple

import numpy as np
import scipy.io

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from .coco_format import encode_rle
from .storage import datasets_root

__all__ = ["VOC_CLASSES", "load_sbd_instances", "register_voc_sbd"]

logger = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def _load_struct(path: str, key: str):
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"SBD: cannot read {path}: {e}") from e
    if key not in mat:
        raise ValueError(f"SBD: {path} has no {key!r} struct (keys: {sorted(k for k in mat if not k.startswith('__'))})")
    return mat[key]


def _annotations(inst_path: str, cls_path: str) -> Tuple[List[Dict], Tuple[int, int]]:
    inst = _load_struct(inst_path, "GTinst")
    seg = np.asarray(inst.Segmentation)
    categories = np.atleast_1d(np.asarray(inst.Categories)).astype(np.int64).ravel()
    cls_map = np.asarray(_load_struct(cls_path, "GTcls").Segmentation) if os.path.isfile(cls_path) else None
    if cls_map is not None and cls_map.shape != seg.shape:
        raise ValueError(f"SBD: {cls_path} class map {cls_map.shape} and {inst_path} instance map {seg.shape} differ")
    annos = []
    for k, category in enumerate(categories, start=1):
        if not 1 <= category <= len(VOC_CLASSES):
            raise ValueError(f"SBD: {inst_path}: instance {k} has category {category}, expected 1..{len(VOC_CLASSES)}")
        mask = seg == k
        if not mask.any():
            continue  # an instance listed without pixels (none in the release, but harmless)
        if cls_map is not None:
            labels, counts = np.unique(cls_map[mask], return_counts=True)
            if labels[np.argmax(counts)] != category:
                raise ValueError(
                    f"SBD: {inst_path}: instance {k} is category {category} but {cls_path} labels its pixels "
                    f"{int(labels[np.argmax(counts)])}"
                )
        ys, xs = np.nonzero(mask)
        annos.append({
            # Pixel-inclusive mask extent as a box in continuous coordinates.
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
            "bbox_mode": BoxMode.XYXY_ABS,
            "category_id": int(category) - 1,
            "segmentation": encode_rle(mask),
            "iscrowd": 0,
        })
    return annos, seg.shape


def load_sbd_instances(root: str, split_file: str) -> List[Dict]:
    """Dataset dicts of the image ids listed in ``split_file`` (relative to ``root`` or absolute)."""
    split_path = split_file if os.path.isabs(split_file) else os.path.join(root, split_file)
    if not os.path.isfile(split_path):
        raise FileNotFoundError(f"SBD: split list {split_path} not found (expected one image id a line)")
    with open(split_path) as f:
        ids = [line.strip() for line in f if line.strip()]
    dicts = []
    for image_id in ids:
        annos, (h, w) = _annotations(
            os.path.join(root, "inst", image_id + ".mat"), os.path.join(root, "cls", image_id + ".mat")
        )
        dicts.append({
            "file_name": os.path.join(root, "img", image_id + ".jpg"),
            "image_id": image_id,
            "height": int(h),
            "width": int(w),
            "annotations": annos,
        })
    return dicts


def register_voc_sbd(name: str, root: str, split_file: str) -> None:
    """Registers ``name`` (lazily loaded) with the 20 VOC classes and the SDS evaluator."""
    DatasetCatalog.register(name, lambda: load_sbd_instances(root, split_file))
    MetadataCatalog.get(name).set(
        thing_classes=list(VOC_CLASSES), evaluator_type="sds", dirname=root, split=split_file
    )


def register_all(root: str = None) -> None:
    """Registers voc_sbd_train and voc_sbd_val when ``<root>/sbd`` (by default the datasets root's) exists."""
    root = os.path.join(datasets_root() if root is None else root, "sbd")
    if not os.path.isdir(root):
        logger.info(f"{root} not found: voc_sbd_* not registered")
        return
    for split in ("train", "val"):
        name = f"voc_sbd_{split}"
        if name not in DatasetCatalog.list():
            register_voc_sbd(name, root, f"{split}.txt")


register_all()
