"""The default dataset: generated instance segmentation of textured, overlapping shapes.

It is used when the user names no other dataset, so that the whole workflow (train, evaluate, demo)
runs on any machine without a download. The images are generated once, deterministically from a fixed
seed, into a cache folder and are then an ordinary COCO-format dataset (PNG images + a COCO json with
RLE masks), registered with ``register_coco_instances`` like any other.

Cache folder (the first that applies):
  1. ``$CASCADES_SHAPES_ROOT`` when set;
  2. ``$DETECTRON2_DATASETS/cascades_shapes`` when it already exists or ``$DETECTRON2_DATASETS`` is
     writable, by its permissions (datasets live together, detectron2's convention);
  3. ``~/.cache/detectron2_cascades/shapes`` (``$DETECTRON2_DATASETS`` is often a read-only share).
Each split is written into a temporary folder and renamed into place, so an interrupted generation
never leaves a half-written split and concurrent processes (DDP ranks) cannot corrupt each other.
"""

import json
import os
import shutil
import stat
import tempfile

import cv2
import numpy as np
import pycocotools.mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.datasets import load_coco_json

# get_detection_dataset_dicts is re-exported so that a config can name
# "cascades.data.default_shapes.get_detection_dataset_dicts" as its dataset loader: importing this
# module to find it registers the shapes splits (cascades.engine.smoke does so for any config).
__all__ = ["CLASS_NAMES", "SPLITS", "default_shapes_root", "generate_split", "get_detection_dataset_dicts",
           "register_default_shapes"]

CLASS_NAMES = ("circle", "triangle", "square", "star", "cross")
# Bump when the generator changes so that stale caches are not reused.
VERSION = 1
IMAGE_SIZE = 256
# name -> (seed, number of images)
SPLITS = {
    "cascades_shapes_train": (0, 400),
    "cascades_shapes_val": (1, 50),
}
_MIN_VISIBLE_FRACTION = 0.5
_MIN_VISIBLE_AREA = 80


def _writable(folder):
    # The mode bits too: root may write anywhere, but a share marked read-only should stay untouched.
    return (os.path.isdir(folder) and os.access(folder, os.W_OK)
            and bool(os.stat(folder).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)))


def default_shapes_root():
    """The cache folder of the generated dataset (see the module docstring for the order)."""
    if os.environ.get("CASCADES_SHAPES_ROOT"):
        return os.environ["CASCADES_SHAPES_ROOT"]
    datasets = os.environ.get("DETECTRON2_DATASETS", "datasets")
    shared = os.path.join(datasets, "cascades_shapes")
    if os.path.isdir(shared) or _writable(datasets):
        return shared
    return os.path.join(os.path.expanduser("~"), ".cache", "detectron2_cascades", "shapes")


def _split_dir(root, name):
    return os.path.join(root, f"v{VERSION}", name)


def _polygon(kind, center, radius, angle):
    """Vertices of a regular shape; circles are drawn separately."""
    if kind == "triangle":
        angles, radii = np.arange(3) * 2 * np.pi / 3, np.full(3, radius)
    elif kind == "square":
        angles, radii = np.arange(4) * np.pi / 2 + np.pi / 4, np.full(4, radius)
    elif kind == "star":
        angles, radii = np.arange(10) * np.pi / 5, np.tile([radius, radius * 0.45], 5)
    else:  # cross: a plus sign of arm width radius * 0.7
        w = radius * 0.35
        xy = np.array([(-w, -radius), (w, -radius), (w, -w), (radius, -w), (radius, w), (w, w),
                       (w, radius), (-w, radius), (-w, w), (-radius, w), (-radius, -w), (-w, -w)])
        angles = np.arctan2(xy[:, 1], xy[:, 0])
        radii = np.hypot(xy[:, 0], xy[:, 1])
    angles = angles + angle
    pts = np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], axis=1)
    return np.round(pts).astype(np.int32)


def _texture(rng, size):
    """A random fill: solid, stripes, checkerboard or blotches, in two random colours."""
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    kind = rng.integers(4)
    if kind == 0:
        weight = np.zeros((size, size))
    elif kind == 1:
        theta, period = rng.uniform(0, np.pi), rng.uniform(6, 16)
        weight = (np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period) > 0) * 1.0
    elif kind == 2:
        cell = int(rng.integers(5, 12))
        weight = ((xx // cell + yy // cell) % 2) * 1.0
    else:
        low = rng.uniform(0, 1, (size // 16 + 1, size // 16 + 1)).astype(np.float32)
        weight = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    return c1 * (1 - weight[..., None]) + c2 * weight[..., None]


def _render(rng):
    """One image and its instances: (HxWx3 uint8 BGR, [(class id, visible HxW bool mask)])."""
    size = IMAGE_SIZE
    yy, xx = np.mgrid[0:size, 0:size]
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)) / size
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    image = c1 * (1 - ramp[..., None]) + c2 * ramp[..., None]

    masks, labels = [], []
    for _ in range(int(rng.integers(2, 7))):
        # Rejection-sample a placement that leaves every earlier shape at least half visible, so that
        # occlusion is frequent but each labelled instance is still recognisable.
        for _attempt in range(20):
            label = int(rng.integers(len(CLASS_NAMES)))
            radius = rng.uniform(14, 48)
            center = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
            full = np.zeros((size, size), np.uint8)
            if CLASS_NAMES[label] == "circle":
                cv2.circle(full, tuple(int(v) for v in np.round(center)), int(round(radius)), 1, -1)
            else:
                cv2.fillPoly(full, [_polygon(CLASS_NAMES[label], center, radius, rng.uniform(0, 2 * np.pi))], 1)
            full = full.astype(bool)
            if full.sum() < _MIN_VISIBLE_AREA * 2:
                continue
            if all((m & ~full).sum() >= _MIN_VISIBLE_FRACTION * m.sum() and (m & ~full).sum() >= _MIN_VISIBLE_AREA
                   for m in masks):
                break
        else:
            continue
        masks = [m & ~full for m in masks]
        image[full] = _texture(rng, size)[full]
        masks.append(full)
        labels.append(label)
    image = image + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), list(zip(labels, masks))


def _write_split(out_dir, seed, num_images):
    os.makedirs(os.path.join(out_dir, "images"))
    images, annotations = [], []
    for image_id in range(num_images):
        image, instances = _render(np.random.default_rng([seed, image_id]))
        file_name = f"{image_id:06d}.png"
        cv2.imwrite(os.path.join(out_dir, "images", file_name), image)
        images.append({"id": image_id, "file_name": file_name, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        for label, mask in instances:
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": label + 1,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": float(mask_util.area(rle)),
                "bbox": [float(v) for v in mask_util.toBbox(rle)],
                "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def generate_split(name, root=None):
    """Writes split ``name`` under ``root`` unless it is already there; returns its folder."""
    if name not in SPLITS:
        raise KeyError(f"Unknown default-shapes split {name!r}; expected one of {sorted(SPLITS)}")
    final = _split_dir(root or default_shapes_root(), name)
    if os.path.isfile(os.path.join(final, "annotations.json")):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=os.path.dirname(final))
    try:
        _write_split(os.path.join(tmp, "split"), *SPLITS[name])
        try:
            os.rename(os.path.join(tmp, "split"), final)
        except OSError:
            # Another process renamed its identical copy into place first.
            if not os.path.isfile(os.path.join(final, "annotations.json")):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def register_default_shapes(root=None):
    """Registers every split; images are generated on the first load, not at registration."""
    root = root or default_shapes_root()
    for name in SPLITS:
        split_dir = _split_dir(root, name)
        json_file = os.path.join(split_dir, "annotations.json")
        image_root = os.path.join(split_dir, "images")

        def load(name=name, json_file=json_file, image_root=image_root):
            generate_split(name, root)
            return load_coco_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)
        # generated: the files appear on the first load (checked by cascades.engine.config.check_datasets).
        MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco",
                                      thing_classes=list(CLASS_NAMES), generated=True)


if not any(name in DatasetCatalog for name in SPLITS):
    register_default_shapes()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Generates the default shapes dataset (if not cached).")
    parser.add_argument("--images-of", choices=sorted(SPLITS), help="print only this split's image folder")
    args = parser.parse_args()
    for split in sorted(SPLITS) if args.images_of is None else [args.images_of]:
        folder = generate_split(split)
        print(os.path.join(folder, "images") if args.images_of else f"{split}: {folder}")
