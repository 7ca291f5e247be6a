"""Converters of the public releases of balloon (VIA polygons) and coco128-seg (YOLO polygons) into the
COCO "instances" layout that :mod:`cascades.data.builtin` registers. Each converts an extracted release
folder in place; :mod:`cascades.data.prepare` downloads, extracts and publishes it.

Both keep polygons (``segmentation`` a list of one ``[x1, y1, ...]`` in pixels, clipped to the image),
``area`` = the pixels the polygon covers, ``bbox`` = the polygon's extent, ``iscrowd`` 0; ``file_name``
is relative to the image folder.
"""
import glob
import json
import logging
import os
import shutil
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

from .coco_format import instances_json, polygon_annotation
from .storage import write_json

__all__ = ["COCO_THING_CATEGORIES", "convert_balloon", "convert_coco128_seg"]

logger = logging.getLogger(__name__)

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# COCO's supercategories, by the first category id of each (ids are grouped by supercategory).
_SUPERCATEGORY_STARTS = ((1, "person"), (2, "vehicle"), (10, "outdoor"), (16, "animal"), (27, "accessory"),
                         (34, "sports"), (44, "kitchen"), (52, "food"), (62, "furniture"), (72, "electronic"),
                         (78, "appliance"), (84, "indoor"))
# The 80 "thing" categories with COCO's ids (1..90), in id order: YOLO's class k is the k-th of them.
COCO_THING_CATEGORIES = [
    {"id": c["id"], "name": c["name"],
     "supercategory": [name for start, name in _SUPERCATEGORY_STARTS if start <= c["id"]][-1]}
    for c in COCO_CATEGORIES if c["isthing"]
]


def _image_size(path: str) -> Tuple[int, int]:
    """(height, width) as detectron2 reads the image: after its EXIF rotation."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
            width, height = height, width
    return height, width


def _clip_polygon(xs, ys, height: int, width: int, decimals=None) -> List[float]:
    xs, ys = np.clip(np.asarray(xs, float), 0, width), np.clip(np.asarray(ys, float), 0, height)
    if decimals is not None:
        xs, ys = xs.round(decimals), ys.round(decimals)
    return [float(v) for v in np.stack([xs, ys], axis=1).ravel()]


def _via_polygons(via_file: str) -> Dict[str, List[Tuple[List[float], List[float]]]]:
    """file name -> [(xs, ys)] of a VIA project file (VIA 1.x: regions a dict; 2.x: a list)."""
    with open(via_file) as f:
        project = json.load(f)
    polygons = {}
    for entry in project.values():
        regions = entry["regions"]
        regions = regions.values() if isinstance(regions, dict) else regions
        shapes = []
        for region in regions:
            shape = region["shape_attributes"]
            if shape.get("name") != "polygon":
                raise ValueError(f"{via_file}: {entry['filename']} has a {shape.get('name')!r} region; "
                                 "only polygons are converted")
            shapes.append((shape["all_points_x"], shape["all_points_y"]))
        polygons[entry["filename"]] = shapes
    return polygons


def convert_balloon(folder: str, source: str) -> None:
    """``folder``: the release's ``balloon/`` (``train/`` and ``val/``, each photos and
    ``via_region_data.json``). Writes ``train.json`` and ``val.json`` beside them: one category
    ``balloon`` (id 1), images sorted by file name with ids 1.., the photos and VIA files stay.
    ``source``: where the release came from, for the files' ``info``."""
    for split in ("train", "val"):
        image_dir = os.path.join(folder, split)
        polygons = _via_polygons(os.path.join(image_dir, "via_region_data.json"))
        images, annotations = [], []
        for image_id, file_name in enumerate(sorted(polygons), start=1):
            height, width = _image_size(os.path.join(image_dir, file_name))
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            for xs, ys in polygons[file_name]:
                polygon = _clip_polygon(xs, ys, height, width)
                annotations.append(polygon_annotation(len(annotations) + 1, image_id, 1, polygon, height, width))
        description = (f"Balloon dataset ({split}) of the matterport/Mask_RCNN release v2.1, converted from VIA "
                       "polygons (via_region_data.json); vertices are VIA's pixel coordinates, clipped to the image")
        categories = [{"id": 1, "name": "balloon", "supercategory": "balloon"}]
        write_json(os.path.join(folder, f"{split}.json"),
                   instances_json(description, source, images, annotations, categories))


def _yolo_polygons(label_file: str) -> List[Tuple[int, np.ndarray]]:
    """[(class index, [[x, y], ...] normalized)] of a YOLO segmentation label file."""
    polygons = []
    with open(label_file) as f:
        for line_number, line in enumerate(f, start=1):
            values = line.split()
            if not values:
                continue
            where = f"{label_file}:{line_number}"
            try:
                category, coords = int(values[0]), np.asarray(values[1:], dtype=float)
            except ValueError:
                raise ValueError(f"{where}: expected 'class x1 y1 x2 y2 ...' numbers, got {line.strip()!r}") from None
            if not 0 <= category < len(COCO_THING_CATEGORIES):
                raise ValueError(f"{where}: class {category} is not one of the 80 COCO classes (0..79)")
            if len(coords) < 6 or len(coords) % 2:
                raise ValueError(f"{where}: a polygon needs at least 3 x y pairs, got {len(coords)} numbers")
            polygons.append((category, coords.reshape(-1, 2)))
    return polygons


def _image_id(file_name: str) -> int:
    stem = os.path.splitext(file_name)[0]
    if not stem.isdigit():
        raise ValueError(f"coco128-seg: {file_name} is not named by its COCO image id (e.g. 000000000009.jpg)")
    return int(stem)


def convert_coco128_seg(folder: str, source: str, split: str = "train2017") -> None:
    """``folder``: the release's ``coco128-seg/`` (``images/<split>/*.jpg``, ``labels/<split>/*.txt`` of
    normalized YOLO polygons). Moves the photos to ``images/`` and writes ``train.json``: image id =
    the file's number (COCO's id), category ids COCO's own (1..90), vertices rounded to 0.01 pixel.
    Photos without a label file are kept without annotations, as COCO has them. ``source``: where the
    release came from, for the file's ``info``."""
    image_dir, label_dir = os.path.join(folder, "images", split), os.path.join(folder, "labels", split)
    labels = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(label_dir, "*.txt"))}
    files = sorted((f for f in os.listdir(image_dir) if f.lower().endswith(_IMAGE_EXTENSIONS)), key=_image_id)
    orphans = sorted(set(labels) - {os.path.splitext(f)[0] for f in files})
    if orphans:
        raise ValueError(f"{label_dir}: label files without a photo in {image_dir}: {', '.join(orphans[:5])}")
    images, annotations, empty = [], [], 0
    for file_name in files:
        image_id = _image_id(file_name)
        height, width = _image_size(os.path.join(image_dir, file_name))
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height,
                       "coco_url_hint": f"{split}/{file_name}"})
        stem = os.path.splitext(file_name)[0]
        for category, points in _yolo_polygons(labels[stem]) if stem in labels else []:
            polygon = _clip_polygon(points[:, 0] * width, points[:, 1] * height, height, width, decimals=2)
            annotation = polygon_annotation(len(annotations) + 1, image_id, COCO_THING_CATEGORIES[category]["id"],
                                            polygon, height, width)
            if annotation["area"] > 0:
                annotations.append(annotation)
            else:
                empty += 1
    if empty:
        logger.warning(f"coco128-seg: {empty} polygons cover no pixel and were left out")
    for file_name in files:
        os.rename(os.path.join(image_dir, file_name), os.path.join(folder, "images", file_name))
    shutil.rmtree(image_dir)
    shutil.rmtree(os.path.join(folder, "labels"))
    description = (f"coco128-seg (Ultralytics): the first 128 images of COCO {split} with YOLO polygons derived "
                   "from COCO 2017's instance annotations, converted to COCO instances; COCO's category ids")
    write_json(os.path.join(folder, "train.json"),
               instances_json(description, source, images, annotations, COCO_THING_CATEGORIES))
