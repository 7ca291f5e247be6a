import sys

import pytest

from cascades.evaluation import build_evaluator
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator


def test_coco_style_datasets_get_the_coco_evaluator(tmp_path):
    assert isinstance(build_evaluator("cascades_shapes_val", str(tmp_path)), COCOEvaluator)


def test_sds_datasets_get_the_sds_evaluator(tmp_path, monkeypatch):
    name = "test_evaluator_sds"
    if name not in DatasetCatalog:
        DatasetCatalog.register(name, lambda: [])
        MetadataCatalog.get(name).set(evaluator_type="sds")
    monkeypatch.setitem(sys.modules, "cascades.evaluation.sds_evaluation", None)
    with pytest.raises(NotImplementedError, match="needs the SDS evaluator"):
        build_evaluator(name, str(tmp_path))

    class SDSEvaluator:
        def __init__(self, dataset_name, output_dir):
            self.args = (dataset_name, output_dir)

    module = type(sys)("cascades.evaluation.sds_evaluation")
    module.SDSEvaluator = SDSEvaluator
    monkeypatch.setitem(sys.modules, "cascades.evaluation.sds_evaluation", module)
    assert build_evaluator(name, str(tmp_path)).args == (name, str(tmp_path))


def test_unknown_datasets_and_several_at_once_are_refused(tmp_path):
    with pytest.raises(KeyError, match="'nope' is not registered"):
        build_evaluator("nope")
    with pytest.raises(ValueError, match="one dataset at a time"):
        build_evaluator(["cascades_shapes_val", "cascades_shapes_train"])
