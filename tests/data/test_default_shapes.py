import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

import cascades.data.default_shapes as shapes
from detectron2.data import DatasetCatalog, MetadataCatalog


@pytest.fixture
def small_splits(monkeypatch):
    monkeypatch.setitem(shapes.SPLITS, "cascades_shapes_train", (0, 12))
    monkeypatch.setitem(shapes.SPLITS, "cascades_shapes_val", (1, 4))


def _read_split(folder):
    with open(os.path.join(folder, "annotations.json")) as f:
        data = json.load(f)
    images = {im["file_name"]: open(os.path.join(folder, "images", im["file_name"]), "rb").read()
              for im in data["images"]}
    return data, images


def test_generation_is_deterministic(tmp_path, small_splits):
    a = _read_split(shapes.generate_split("cascades_shapes_train", str(tmp_path / "a")))
    b = _read_split(shapes.generate_split("cascades_shapes_train", str(tmp_path / "b")))
    assert a == b
    val = _read_split(shapes.generate_split("cascades_shapes_val", str(tmp_path / "a")))
    assert val[1] != {k: v for k, v in a[1].items() if k in val[1]}, "splits must differ"


def test_annotations_are_valid_occluded_instances(tmp_path, small_splits):
    data, _ = _read_split(shapes.generate_split("cascades_shapes_train", str(tmp_path)))
    assert [c["name"] for c in data["categories"]] == list(shapes.CLASS_NAMES)
    per_image = {}
    for ann in data["annotations"]:
        mask = mask_util.decode(ann["segmentation"]).astype(bool)
        assert mask.shape == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)
        assert mask.sum() == ann["area"] >= 80
        x, y, w, h = ann["bbox"]
        ys, xs = np.nonzero(mask)
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        per_image.setdefault(ann["image_id"], []).append((mask, ann["bbox"]))
    assert {ann["category_id"] for ann in data["annotations"]} == set(range(1, len(shapes.CLASS_NAMES) + 1))
    overlapping_boxes = 0
    for instances in per_image.values():
        masks = np.stack([m for m, _ in instances])
        # Visible masks never overlap: the shape drawn later occludes the earlier one.
        assert masks.sum(0).max() == 1
        for i, (_, a) in enumerate(instances):
            for _, b in instances[i + 1:]:
                overlapping_boxes += (min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0])
                                      and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1]))
    assert overlapping_boxes > 0, "the generator should produce occlusions"


def test_interrupted_generation_leaves_nothing_and_is_redone(tmp_path, small_splits, monkeypatch):
    write = shapes._write_split

    def crash(out_dir, seed, num_images):
        write(out_dir, seed, 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes, "_write_split", crash)
    with pytest.raises(KeyboardInterrupt):
        shapes.generate_split("cascades_shapes_val", str(tmp_path))
    assert os.listdir(tmp_path / f"v{shapes.VERSION}") == []
    monkeypatch.setattr(shapes, "_write_split", write)
    folder = shapes.generate_split("cascades_shapes_val", str(tmp_path))
    assert len(_read_split(folder)[0]["images"]) == 4
    stamp = os.stat(os.path.join(folder, "annotations.json")).st_mtime_ns
    assert shapes.generate_split("cascades_shapes_val", str(tmp_path)) == folder
    assert os.stat(os.path.join(folder, "annotations.json")).st_mtime_ns == stamp, "the cache is reused"


def test_cache_folder_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADES_SHAPES_ROOT", str(tmp_path / "explicit"))
    assert shapes.default_shapes_root() == str(tmp_path / "explicit")
    monkeypatch.delenv("CASCADES_SHAPES_ROOT")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert shapes.default_shapes_root() == str(tmp_path / "cascades_shapes")
    cache = os.path.expanduser("~/.cache/detectron2_cascades/shapes")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "missing"))
    assert shapes.default_shapes_root() == cache
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(read_only))
    assert shapes.default_shapes_root() == cache


def test_registered_like_any_coco_dataset():
    dicts = DatasetCatalog.get("cascades_shapes_val")
    assert len(dicts) == shapes.SPLITS["cascades_shapes_val"][1]
    meta = MetadataCatalog.get("cascades_shapes_val")
    assert meta.thing_classes == list(shapes.CLASS_NAMES) and os.path.isfile(meta.json_file)
    assert all(isinstance(a["segmentation"], dict) for d in dicts for a in d["annotations"])
