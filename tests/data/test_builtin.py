"""Registration of balloon and coco128-seg (with its split by image id) from the datasets root."""
import json
import os

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from cascades.data import builtin
from cascades.data.storage import missing_message


def test_registration_is_idempotent_and_skips_missing_folders(tmp_path):
    before = set(DatasetCatalog.list())
    builtin.register_all(str(tmp_path))  # empty root: nothing new but the lazy COCO view
    builtin.register_all(str(tmp_path))
    assert set(DatasetCatalog.list()) - before <= {"coco_2017_train_semantic"}


def test_coco128_seg_split_rule():
    assert [builtin.coco128_seg_split(i) for i in (9, 25, 30, 36, 41, 86, 250, 508)] == [
        "val", "val", "train", "train", "val", "train", "train", "train"]


def _tiny_coco(tmp_path):
    """Three images (ids 4, 5, 9: 5 and 9 are validation images) with one box-only annotation each."""
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 8, "height": 6} for i in (4, 5, 9)]
    annotations = [{"id": k + 1, "image_id": im["id"], "category_id": 3, "bbox": [1.0, 1.0, 2.0, 2.0],
                    "area": 4.0, "iscrowd": 0, "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]}
                   for k, im in enumerate(images)]
    source = tmp_path / "coco" / "train.json"
    source.parent.mkdir()
    source.write_text(json.dumps({"images": images, "annotations": annotations,
                                  "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "train"}]}))
    return str(source)


@pytest.mark.parametrize("split, ids", [("train", [4]), ("val", [5, 9])])
def test_split_is_registered_with_a_json_of_its_own_images(tmp_path, monkeypatch, split, ids):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the cache
    source = _tiny_coco(tmp_path)
    name = f"tiny_coco_{split}"
    builtin.register_split(name, source, str(tmp_path / "coco"), split)
    try:
        meta = MetadataCatalog.get(name)
        assert meta.json_file.startswith(str(tmp_path / "home" / ".cache")) and meta.evaluator_type == "coco"
        dicts = DatasetCatalog.get(name)
        assert [d["image_id"] for d in dicts] == ids
        assert [a["category_id"] for d in dicts for a in d["annotations"]] == [0] * len(ids)
        assert meta.thing_classes == ["car", "train"]
        with open(meta.json_file) as f:
            derived = json.load(f)
        assert [im["id"] for im in derived["images"]] == ids
        assert [a["image_id"] for a in derived["annotations"]] == ids
        # COCO's evaluator counts every image of json_file: it must hold this split's images only.
        assert sorted(COCOEvaluator(name, output_dir=str(tmp_path / "eval"))._coco_api.getImgIds()) == ids
        # A changed source is derived again at the next load.
        data = json.loads(open(source).read())
        data["images"] = data["images"][:1] + data["images"][2:]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 5]
        open(source, "w").write(json.dumps(data))
        assert [d["image_id"] for d in DatasetCatalog.get(name)] == [i for i in ids if i != 5]
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _require(name, folder):
    if name not in DatasetCatalog.list():
        pytest.skip(missing_message(folder))


def test_real_balloon():
    _require("balloon_train", "balloon")
    assert len(DatasetCatalog.get("balloon_train")) == 61
    assert len(DatasetCatalog.get("balloon_val")) == 13
    assert MetadataCatalog.get("balloon_train").thing_classes == ["balloon"]


def test_real_coco128_seg_split():
    """The figures of docs/DATASETS.md (the 96-image copy): both sides have enough classes to learn and
    to measure, and the split partitions the images."""
    _require("coco128_seg_train", "coco128-seg")
    train, val = DatasetCatalog.get("coco128_seg_train"), DatasetCatalog.get("coco128_seg_val")
    assert len(MetadataCatalog.get("coco128_seg_val").thing_classes) == 80
    figures = []
    for dicts in (train, val):
        annotations = [a for d in dicts for a in d["annotations"]]
        figures.append((len(dicts), len(annotations), len({a["category_id"] for a in annotations})))
    assert figures == [(74, 501, 64), (22, 203, 42)]
    assert not {d["image_id"] for d in train} & {d["image_id"] for d in val}
    names = {os.path.basename(d["file_name"]) for d in train}
    assert {"000000000086.jpg", "000000000250.jpg", "000000000508.jpg"} <= names  # grayscale, unannotated
