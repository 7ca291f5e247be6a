"""VOC+SBD registration on tiny synthetic SBD-layout folders (inst/*.mat, cls/*.mat, split lists)."""
import numpy as np
import pycocotools.mask as mask_util
import pytest
import scipy.io

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.structures import BoxMode

from cascades.data.voc_sbd import VOC_CLASSES, load_sbd_instances, register_all, register_voc_sbd


def write_image(root, image_id, inst_map, categories, cls_map=None):
    (root / "inst").mkdir(exist_ok=True)
    (root / "cls").mkdir(exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    scipy.io.savemat(root / "inst" / f"{image_id}.mat", {"GTinst": {
        "Segmentation": inst_map.astype(np.uint8),
        "Categories": np.asarray(categories, dtype=np.uint8).reshape(-1, 1),
        "Boundaries": np.zeros((len(categories), 1), dtype=object),
    }})
    if cls_map is None:
        cls_map = np.zeros_like(inst_map)
        for k, c in enumerate(categories, start=1):
            cls_map[inst_map == k] = c
    scipy.io.savemat(root / "cls" / f"{image_id}.mat", {"GTcls": {
        "Segmentation": cls_map.astype(np.uint8), "Boundaries": np.zeros((20, 1), dtype=object),
        "CategoriesPresent": np.unique(cls_map[cls_map > 0]).astype(np.uint8),
    }})


@pytest.fixture
def sbd_root(tmp_path):
    root = tmp_path / "sbd"
    root.mkdir()
    a = np.zeros((20, 30), dtype=np.uint8)
    a[2:6, 3:10] = 1  # a person (15)
    a[10:18, 20:28] = 2  # a dog (12)
    a[0, :] = 255  # void boundary pixels
    write_image(root, "2008_000001", a, [15, 12])
    single = np.zeros((10, 12), dtype=np.uint8)
    single[4:9, 1:5] = 1
    write_image(root, "2008_000002", single, [1])  # one instance: Categories squeezes to a scalar
    write_image(root, "2008_000003", np.zeros((8, 8), dtype=np.uint8), [])  # no instances
    (root / "train.txt").write_text("2008_000001\n2008_000002\n")
    (root / "val.txt").write_text("2008_000003\n")
    return root


def test_instances_classes_boxes_and_masks(sbd_root):
    dicts = load_sbd_instances(str(sbd_root), "train.txt")
    assert [d["image_id"] for d in dicts] == ["2008_000001", "2008_000002"]
    d = dicts[0]
    assert (d["height"], d["width"]) == (20, 30) and d["file_name"].endswith("img/2008_000001.jpg")
    person, dog = d["annotations"]
    assert VOC_CLASSES[person["category_id"]] == "person" and VOC_CLASSES[dog["category_id"]] == "dog"
    assert person["bbox"] == [3, 2, 10, 6] and person["bbox_mode"] == BoxMode.XYXY_ABS
    mask = mask_util.decode(person["segmentation"])
    assert mask.shape == (20, 30) and mask.sum() == 4 * 7 and mask[2:6, 3:10].all()
    assert [a["category_id"] for a in dicts[1]["annotations"]] == [0]  # aeroplane
    assert load_sbd_instances(str(sbd_root), "val.txt")[0]["annotations"] == []


def test_annotations_go_through_detectron2s_mapper_utils(sbd_root):
    d = load_sbd_instances(str(sbd_root), "train.txt")[0]
    inst = utils.annotations_to_instances(d["annotations"], (20, 30), mask_format="bitmask")
    assert inst.gt_masks.tensor.shape == (2, 20, 30) and inst.gt_classes.tolist() == [14, 11]
    assert inst.gt_masks.tensor[1].sum() == 64


def test_registration_and_metadata(sbd_root):
    register_voc_sbd("voc_sbd_test_train", str(sbd_root), "train.txt")
    try:
        meta = MetadataCatalog.get("voc_sbd_test_train")
        assert meta.evaluator_type == "sds" and meta.thing_classes == list(VOC_CLASSES)
        assert len(DatasetCatalog.get("voc_sbd_test_train")) == 2
    finally:
        DatasetCatalog.remove("voc_sbd_test_train")
        MetadataCatalog.remove("voc_sbd_test_train")


def test_register_all_only_when_the_folder_exists(sbd_root):
    if "voc_sbd_train" in DatasetCatalog.list():
        pytest.skip("the real SBD is registered from $DETECTRON2_DATASETS/sbd")
    register_all(str(sbd_root / "img"))  # no sbd/ folder there: nothing registered, no error
    assert "voc_sbd_train" not in DatasetCatalog.list()
    register_all(str(sbd_root.parent))
    try:
        assert [len(DatasetCatalog.get(f"voc_sbd_{s}")) for s in ("train", "val")] == [2, 1]
        assert MetadataCatalog.get("voc_sbd_val").evaluator_type == "sds"
    finally:
        for s in ("train", "val"):
            DatasetCatalog.remove(f"voc_sbd_{s}")
            MetadataCatalog.remove(f"voc_sbd_{s}")


def test_bad_files_are_named(sbd_root):
    bad = np.zeros((20, 30), dtype=np.uint8)
    bad[1:3, 1:3] = 1
    write_image(sbd_root, "bad_category", bad, [21])
    (sbd_root / "bad.txt").write_text("bad_category\n")
    with pytest.raises(ValueError, match="bad_category.mat: instance 1 has category 21"):
        load_sbd_instances(str(sbd_root), "bad.txt")
    cls_map = np.where(bad == 1, 7, 0)
    write_image(sbd_root, "mismatch", bad, [3], cls_map=cls_map)
    (sbd_root / "mm.txt").write_text("mismatch\n")
    with pytest.raises(ValueError, match="is category 3 but .*labels its pixels 7"):
        load_sbd_instances(str(sbd_root), "mm.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_sbd_instances(str(sbd_root), "nope.txt")
    (sbd_root / "missing.txt").write_text("2009_999999\n")
    with pytest.raises(ValueError, match="2009_999999.mat"):
        load_sbd_instances(str(sbd_root), "missing.txt")
