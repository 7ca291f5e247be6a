"""The default dataset: generated instance segmentation of textured, overlapping shapes.

It is used when the user names no other dataset, so that the whole workflow (train, evaluate, demo)
runs on any machine without a download. The images are generated once, deterministically from a fixed
seed, into a cache folder and are then an ordinary COCO-format dataset (PNG images + a COCO json with
RLE masks), registered with ``register_coco_instances`` like any other.

Cache folder (the first that applies):
  1. ``$CASCADES_SHAPES_ROOT`` when set;
  2. ``cascades_shapes`` in the datasets root (``$DETECTRON2_DATASETS``, else ``./datasets``) when it
     already exists or the datasets root is writable, by its permissions (datasets live together,
     detectron2's convention);
  3. ``~/.cache/detectron2_cascades/shapes`` (the datasets root is often a read-only share).
Each split is written atomically (:func:`cascades.data.storage.publish_folder`).

Stand-ins (:func:`stand_in`): the same images labelled for a model of another number of classes, so that
any config can run a short check (cascades.engine.smoke) on a machine without its dataset.
"""

import json
import os

import cv2
import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog, get_detection_dataset_dicts
from detectron2.data.datasets import load_coco_json

from ..engine.progress import progress_over
from .coco_format import rle_annotation
from .storage import cache_root, datasets_root, publish_folder, write_json, writable

# get_detection_dataset_dicts is re-exported so that a config can name
# "cascades.data.default_shapes.get_detection_dataset_dicts" as its dataset loader: importing this
# module to find it registers the shapes splits (cascades.engine.smoke does so for any config).
__all__ = ["CLASS_NAMES", "SPLITS", "STAND_IN_CLASS_COUNTS", "default_shapes_root", "generate_split",
           "get_detection_dataset_dicts", "register_default_shapes", "stand_in"]

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
# The class counts of the datasets the configs name: balloon, VOC, COCO (the shapes' own 5 need none).
STAND_IN_CLASS_COUNTS = (1, 20, 80)


def default_shapes_root():
    """The cache folder of the generated dataset (see the module docstring for the order)."""
    if os.environ.get("CASCADES_SHAPES_ROOT"):
        return os.environ["CASCADES_SHAPES_ROOT"]
    datasets = datasets_root()
    shared = os.path.join(datasets, "cascades_shapes")
    if os.path.isdir(shared) or writable(datasets):
        return shared
    return os.path.join(cache_root(), "shapes")


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


def _write_split(out_dir, name, seed, num_images):
    os.mkdir(os.path.join(out_dir, "images"))
    images, annotations = [], []
    for image_id in progress_over(range(num_images), f"generating {name}", unit="images"):
        image, instances = _render(np.random.default_rng([seed, image_id]))
        file_name = f"{image_id:06d}.png"
        cv2.imwrite(os.path.join(out_dir, "images", file_name), image)
        images.append({"id": image_id, "file_name": file_name, "height": IMAGE_SIZE, "width": IMAGE_SIZE})
        annotations += [rle_annotation(len(annotations) + k + 1, image_id, label + 1, mask)
                        for k, (label, mask) in enumerate(instances)]
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def generate_split(name, root=None):
    """Writes split ``name`` under ``root`` unless it is already there; returns its folder."""
    if name not in SPLITS:
        raise KeyError(f"Unknown default-shapes split {name!r}; expected one of {sorted(SPLITS)}")
    final = _split_dir(root or default_shapes_root(), name)
    if not os.path.isfile(os.path.join(final, "annotations.json")):
        with publish_folder(final) as staged:
            _write_split(staged, name, *SPLITS[name])
    return final


def _stand_in_classes(num_classes):
    """With fewer classes than shapes, class k holds the shapes k, k + num_classes, ...; with more, the
    classes after the shapes' are declared but have no instance."""
    if num_classes < len(CLASS_NAMES):
        return ["+".join(CLASS_NAMES[k::num_classes]) for k in range(num_classes)]
    return list(CLASS_NAMES) + [f"unused_{k}" for k in range(len(CLASS_NAMES), num_classes)]


def _relabel(data, num_classes):
    classes = _stand_in_classes(num_classes)
    annotations = [{**a, "category_id": (a["category_id"] - 1) % num_classes + 1} for a in data["annotations"]]
    return {**data, "annotations": annotations,
            "categories": [{"id": k + 1, "name": name} for k, name in enumerate(classes)]}


def stand_in(split, num_classes):
    """The name of a registered dataset of the images of ``split`` (a name of SPLITS) labelled for a model
    of ``num_classes`` classes: ``split`` itself for 5, a stand-in for one of STAND_IN_CLASS_COUNTS."""
    name = split if num_classes == len(CLASS_NAMES) else f"{split}_as_{num_classes}_classes"
    if split not in SPLITS or name not in DatasetCatalog:
        raise ValueError(f"No stand-in of {split!r} for {num_classes} classes; there are stand-ins of "
                         f"{sorted(SPLITS)} for {sorted({len(CLASS_NAMES), *STAND_IN_CLASS_COUNTS})} classes")
    return name


def _register(name, split, root, num_classes):
    split_dir = _split_dir(root, split)
    image_root = os.path.join(split_dir, "images")
    if num_classes == len(CLASS_NAMES):
        json_file = os.path.join(split_dir, "annotations.json")
    else:
        json_file = os.path.join(split_dir, f"annotations_as_{num_classes}_classes.json")

    def load():
        generate_split(split, root)
        if not os.path.isfile(json_file):
            with open(os.path.join(split_dir, "annotations.json")) as f:
                write_json(json_file, _relabel(json.load(f), num_classes))
        return load_coco_json(json_file, image_root, name)

    DatasetCatalog.register(name, load)
    # generated: the files appear on the first load (checked by cascades.engine.config.check_datasets).
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco",
                                  thing_classes=_stand_in_classes(num_classes), generated=True)


def register_default_shapes(root=None):
    """Registers every split and its stand-ins; images are generated on the first load, not at registration."""
    root = root or default_shapes_root()
    for split in SPLITS:
        _register(split, split, root, len(CLASS_NAMES))
        for num_classes in STAND_IN_CLASS_COUNTS:
            _register(f"{split}_as_{num_classes}_classes", split, root, num_classes)


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
