"""Annotations of COCO "instances" json, as the generated and the converted datasets write them."""
from typing import Dict, Sequence

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["encode_rle", "instances_json", "polygon_annotation", "rle_annotation"]


def encode_rle(mask: np.ndarray) -> Dict:
    """A HxW binary mask as compressed RLE that JSON and pycocotools both take (``counts`` a str)."""
    rle = mask_util.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _annotation(ann_id, image_id, category_id, segmentation, rle, bbox):
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation,
            "area": float(mask_util.area(rle)), "bbox": [float(v) for v in bbox], "iscrowd": 0}


def rle_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> Dict:
    """An annotation whose mask is RLE (it may have holes); box = the mask's pixel extent."""
    rle = encode_rle(mask)
    return _annotation(ann_id, image_id, category_id, rle, rle, mask_util.toBbox(rle))


def polygon_annotation(ann_id: int, image_id: int, category_id: int, polygon: Sequence[float],
                       height: int, width: int) -> Dict:
    """An annotation of one polygon ``[x1, y1, x2, y2, ...]`` in pixels: area = the pixels its
    rasterization covers (what COCO's evaluation uses), box = the polygon's extent."""
    xs, ys = np.asarray(polygon[0::2], dtype=float), np.asarray(polygon[1::2], dtype=float)
    rle = mask_util.frPyObjects([list(polygon)], height, width)[0]
    box = [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
    return _annotation(ann_id, image_id, category_id, [list(polygon)], rle, box)


def instances_json(description: str, source: str, images, annotations, categories) -> Dict:
    """The whole file, with ``info`` saying what it is and where it came from."""
    return {"info": {"description": description, "source": source}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories}
