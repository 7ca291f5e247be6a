"""Semantic targets: derived from instance masks, or read from stuff maps, through the mapper."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import detectron2.data.transforms as T
from detectron2.structures import BitMasks, BoxMode, PolygonMasks

from cascades.data import SemanticDatasetMapper, semantic_target_from_instances
from cascades.data.storage import missing_message


def test_things_background_and_overlaps():
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[0, :4, :4] = True  # large, class 2
    masks[1, 2:3, 2:3] = True  # small, on top of the large one, class 0
    target = semantic_target_from_instances(torch.tensor([2, 0]), BitMasks(masks), (6, 6))
    expected = torch.zeros(6, 6, dtype=torch.int64)
    expected[:4, :4] = 3
    expected[2, 2] = 1
    assert torch.equal(target, expected)


def test_polygons_and_ignore_regions():
    polygons = PolygonMasks([[np.array([0, 0, 4, 0, 4, 4, 0, 4], dtype=np.float64)]])
    crowd = np.zeros((8, 8), dtype=bool)
    crowd[6:, 6:] = True
    target = semantic_target_from_instances(torch.tensor([4]), polygons, (8, 8), [crowd])
    assert target[1, 1] == 5 and target[7, 0] == 0 and target[7, 7] == 255


def test_bad_arguments():
    masks = BitMasks(torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="gt_classes has 2 entries"):
        semantic_target_from_instances(torch.tensor([0, 1]), masks, (4, 4))
    with pytest.raises(ValueError, match="gt_masks must be"):
        semantic_target_from_instances(torch.tensor([0]), torch.zeros(1, 4, 4), (4, 4))
    with pytest.raises(ValueError, match="use_instance_mask"):
        SemanticDatasetMapper(is_train=True, augmentations=[], image_format="BGR")


def _mapper():
    return SemanticDatasetMapper(
        is_train=True,
        augmentations=[T.ResizeShortestEdge(64, 128), T.RandomFlip(prob=1.0)],
        image_format="BGR",
        use_instance_mask=True,
    )


def _image(tmp_path, size=(40, 60), mode="RGB"):
    path = str(tmp_path / f"img_{mode}.jpg")
    Image.new(mode, (size[1], size[0]), 128).save(path)
    return path


def _square(x0, y0, x1, y1, category, crowd=0):
    return {
        "bbox": [x0, y0, x1, y1],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": category,
        "iscrowd": crowd,
        "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
    }


def test_mapper_derives_targets_that_follow_the_transforms(tmp_path):
    record = {
        "file_name": _image(tmp_path),
        "height": 40,
        "width": 60,
        "annotations": [_square(0, 0, 20, 20, 2), _square(40, 20, 60, 40, 0, crowd=1)],
    }
    out = _mapper()(record)
    sem = out["sem_seg"]
    assert sem.shape == out["image"].shape[1:] == (64, 96)
    assert sem.dtype == torch.int64
    # flipped: the class-2 square is now at the top right, the crowd square at the bottom left
    assert sem[5, 90] == 3 and sem[60, 5] == 255 and sem[60, 90] == 0
    assert set(sem.unique().tolist()) == {0, 3, 255}
    assert out["instances"].gt_classes.tolist() == [2]


def test_mapper_image_without_annotations_and_grayscale(tmp_path):
    for record in (
        {"file_name": _image(tmp_path, mode="L"), "height": 40, "width": 60, "annotations": []},
        {"file_name": _image(tmp_path), "height": 40, "width": 60},
    ):
        out = _mapper()(record)
        assert out["image"].shape == (3, 64, 96)
        assert (out["sem_seg"] == 0).all() and len(out["instances"]) == 0


def test_mapper_keeps_stuff_maps_when_the_dataset_has_them(tmp_path):
    stuff = np.full((40, 60), 150, dtype=np.uint8)
    stuff[:, :30] = 7
    stuff_path = str(tmp_path / "stuff.png")
    Image.fromarray(stuff).save(stuff_path)
    record = {
        "file_name": _image(tmp_path),
        "sem_seg_file_name": stuff_path,
        "height": 40,
        "width": 60,
        "annotations": [_square(0, 0, 20, 20, 2)],
    }
    sem = _mapper()(record)["sem_seg"]
    assert sem[0, 0] == 150 and sem[0, 95] == 7  # flipped, values untouched


def test_mapper_on_real_coco128_grayscale_and_empty_images():
    from detectron2.data import DatasetCatalog

    import cascades.data  # noqa: F401

    if "coco128_seg_train" not in DatasetCatalog.list():
        pytest.skip(missing_message("coco128-seg"))
    dicts = {os.path.basename(d["file_name"]): d for d in DatasetCatalog.get("coco128_seg_train")}
    gray = _mapper()(dicts["000000000086.jpg"])
    assert gray["image"].shape[0] == 3 and gray["sem_seg"].max() > 0
    classes = set((gray["instances"].gt_classes + 1).tolist())
    assert set(gray["sem_seg"].unique().tolist()) - {0} <= classes
    for name in ("000000000250.jpg", "000000000508.jpg"):
        empty = _mapper()(dicts[name])
        assert (empty["sem_seg"] == 0).all() and len(empty["instances"]) == 0
