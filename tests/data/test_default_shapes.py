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

    def crash(out_dir, name, seed, num_images):
        write(out_dir, name, seed, 2)
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


def test_relabelling_for_fewer_classes():
    data = shapes._relabel({"annotations": [{"category_id": c} for c in range(1, 6)]}, 2)
    assert [a["category_id"] for a in data["annotations"]] == [1, 2, 1, 2, 1]
    assert data["categories"] == [{"id": 1, "name": "circle+square+cross"}, {"id": 2, "name": "triangle+star"}]
    with pytest.raises(ValueError, match="No stand-in of 'cascades_shapes_val' for 2 classes"):
        shapes.stand_in("cascades_shapes_val", 2)


@pytest.mark.parametrize("num_classes, classes", [(1, [0]), (80, [0, 1, 2, 3, 4])])
def test_stand_ins_are_the_shapes_labelled_for_another_number_of_classes(num_classes, classes):
    name = shapes.stand_in("cascades_shapes_val", num_classes)
    dicts, base = DatasetCatalog.get(name), DatasetCatalog.get("cascades_shapes_val")
    assert [d["file_name"] for d in dicts] == [d["file_name"] for d in base]
    labels = [a["category_id"] for d in dicts for a in d["annotations"]]
    assert sorted(set(labels)) == classes
    assert labels == [a["category_id"] % num_classes for d in base for a in d["annotations"]]
    assert len(MetadataCatalog.get(name).thing_classes) == num_classes


def test_stand_in_is_evaluated_with_the_models_classes(tmp_path):
    """COCO's evaluator takes predictions of any of the model's 80 classes on the 80-class stand-in."""
    import torch
    from detectron2.evaluation import COCOEvaluator
    from detectron2.structures import Boxes, BoxMode, Instances

    name = shapes.stand_in("cascades_shapes_val", 80)
    d = DatasetCatalog.get(name)[0]
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in d["annotations"]] + [[0, 0, 9, 9]]
    classes = [a["category_id"] for a in d["annotations"]] + [79]  # a class the shapes do not have
    predictions = Instances((d["height"], d["width"]), pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                            scores=torch.full((len(boxes),), 0.9), pred_classes=torch.tensor(classes))
    evaluator = COCOEvaluator(name, tasks=("bbox",), output_dir=str(tmp_path))
    evaluator.reset()
    evaluator.process([{"image_id": d["image_id"]}], [{"instances": predictions}])
    assert evaluator.evaluate(img_ids=[d["image_id"]])["bbox"]["AP50"] == 100.0
