"""The evaluator follows the dataset: configs name a dataset, never an evaluator class."""

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator

from .sds_evaluation import SDSEvaluator

__all__ = ["build_evaluator"]


def _evaluator_for(dataset_name, output_dir):
    if dataset_name not in DatasetCatalog:
        raise KeyError(
            f"Dataset {dataset_name!r} is not registered; registered datasets are: "
            f"{', '.join(sorted(DatasetCatalog.keys()))}"
        )
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("evaluator_type") == "sds":
        return SDSEvaluator(dataset_name, output_dir=output_dir)
    if "json_file" in meta.as_dict():
        if meta.get("generated") and not os.path.isfile(meta.json_file):
            # Generated datasets (the default shapes) write their json when first loaded.
            DatasetCatalog.get(dataset_name)
        return COCOEvaluator(dataset_name, output_dir=output_dir)
    raise ValueError(
        f"No evaluator for dataset {dataset_name!r}: its metadata has neither evaluator_type='sds' nor a "
        f"COCO json_file (metadata: {sorted(meta.as_dict())})"
    )


def build_evaluator(dataset_name, output_dir=None):
    """
    Args:
        dataset_name (str or list[str]): registered test dataset name(s), as in
            ``dataloader.test.dataset.names``.
        output_dir (str or None): where the evaluator writes its predictions.

    Returns:
        DatasetEvaluator: COCOEvaluator for COCO-style datasets (those with a ``json_file``), the SDS
        evaluator for datasets whose metadata has ``evaluator_type == "sds"`` (VOC+SBD).
    """
    names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
    if len(names) == 1:
        return _evaluator_for(names[0], output_dir)
    # detectron2 concatenates several test sets into one stream; their results cannot be told apart.
    raise ValueError(f"Evaluate one dataset at a time; got dataset_name={names}")
