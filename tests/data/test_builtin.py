"""Registration of balloon and coco128-seg from $DETECTRON2_DATASETS."""
import os

import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog

from cascades.data import builtin


def test_registration_is_idempotent_and_skips_missing_folders(tmp_path):
    before = set(DatasetCatalog.list())
    builtin.register_all(str(tmp_path))  # empty root: nothing new but the lazy COCO view
    builtin.register_all(str(tmp_path))
    assert set(DatasetCatalog.list()) - before <= {"coco_2017_train_semantic"}


def test_real_datasets():
    if "balloon_train" not in DatasetCatalog.list():
        root = os.getenv("DETECTRON2_DATASETS", "datasets")
        pytest.skip(f"balloon/coco128-seg not found under {root} (set DETECTRON2_DATASETS)")
    assert len(DatasetCatalog.get("balloon_train")) == 61
    assert len(DatasetCatalog.get("balloon_val")) == 13
    assert MetadataCatalog.get("balloon_train").thing_classes == ["balloon"]
    coco128 = DatasetCatalog.get("coco128_seg_train")
    assert len(coco128) == 96
    assert len(MetadataCatalog.get("coco128_seg_train").thing_classes) == 80
    assert sum(len(d["annotations"]) for d in coco128) == 704
