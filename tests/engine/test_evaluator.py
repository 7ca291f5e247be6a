import pytest

import cascades.data.default_shapes  # noqa: F401  registers cascades_shapes_*
from cascades.evaluation import build_evaluator
from cascades.evaluation.sds_evaluation import SDSEvaluator
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator


def test_coco_style_datasets_get_the_coco_evaluator(tmp_path):
    assert isinstance(build_evaluator("cascades_shapes_val", str(tmp_path)), COCOEvaluator)


def test_sds_datasets_get_the_sds_evaluator(tmp_path):
    name = "test_evaluator_sds"
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(evaluator_type="sds", thing_classes=["a"])
    evaluator = build_evaluator(name, str(tmp_path))
    assert isinstance(evaluator, SDSEvaluator)


def test_unknown_datasets_and_several_at_once_are_refused(tmp_path):
    with pytest.raises(KeyError, match="'nope' is not registered"):
        build_evaluator("nope")
    with pytest.raises(ValueError, match="one dataset at a time"):
        build_evaluator(["cascades_shapes_val", "cascades_shapes_train"])
