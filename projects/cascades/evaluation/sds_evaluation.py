"""mAP^r, the SDS protocol (Hariharan et al. 2014) as the released MNC/SDS evaluation code computes it.

Per class, all detections of the split are sorted by score. Each is compared with the GT instance
of its class in its image that it overlaps most (mask IoU for mAP^r, box IoU for box AP); it is a
true positive iff that IoU >= the threshold and that GT instance is not matched yet, otherwise a
false positive: there is no fall-back to the second-best GT (COCO's matching falls back). AP is the
VOC07 11-point interpolated precision; mAP is the mean over the classes that have GT instances. Every
GT instance counts (no "difficult" flag); crowd annotations, where a dataset has them, are left out.

``ap_method="coco101"`` swaps in COCO's 101-point interpolation, which makes the numbers comparable
with pycocotools' COCOeval where the matchings agree (no detection's best GT taken by another).
"""
import copy
import itertools
import json
import logging
import os
from collections import OrderedDict, defaultdict
from typing import Dict, Sequence

import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.evaluation.pascal_voc_evaluation import voc_ap
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager
from detectron2.utils.logger import create_small_table

__all__ = ["SDSEvaluator", "average_precision", "match_detections"]

AP_METHODS = ("voc07", "coco101")

logger = logging.getLogger(__name__)


def match_detections(det_images: np.ndarray, det_scores: np.ndarray, ious: Dict, num_gt: Dict, thresh: float):
    """
    The released code's greedy matching for one class.

    Args:
        det_images: D image ids of the detections. det_scores: their D scores.
        ious: image id -> (d_i x g_i array of IoUs between that image's detections, in their order
            within ``det_images``, and its GT instances of the class).
        num_gt: image id -> g_i.
        thresh: IoU threshold.

    Returns:
        D booleans (true positive), in order of decreasing score, and the number of GT instances.
    """
    order = np.argsort(-det_scores, kind="mergesort")
    row = np.zeros(len(det_images), dtype=np.int64)  # each detection's row in its image's matrix
    seen = defaultdict(int)
    for i, img in enumerate(det_images):
        row[i] = seen[img]
        seen[img] += 1
    matched = {img: np.zeros(n, dtype=bool) for img, n in num_gt.items()}
    tp = np.zeros(len(order), dtype=bool)
    for k, i in enumerate(order):
        img = det_images[i]
        if num_gt.get(img, 0) == 0:
            continue
        overlaps = ious[img][row[i]]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= thresh and not matched[img][best]:
            matched[img][best] = True
            tp[k] = True
    return tp, sum(num_gt.values())


def average_precision(tp: np.ndarray, num_gt: int, method: str = "voc07") -> float:
    """AP of detections sorted by decreasing score (``tp``: true positive or not) over ``num_gt`` GT:
    ``"voc07"``, the 11-point interpolation (detectron2's ``voc_ap``), or ``"coco101"``."""
    if method not in AP_METHODS:
        raise ValueError(f"average_precision: method must be one of {AP_METHODS}, got {method!r}")
    if num_gt == 0:
        return float("nan")
    ctp = np.cumsum(tp)
    recall = ctp / num_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    if method == "voc07":
        return float(voc_ap(recall, precision, use_07_metric=True))
    # COCOeval: precision made monotone from the right, read at the first recall >= t.
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


class SDSEvaluator(DatasetEvaluator):
    """
    mAP^r at mask IoU thresholds (0.5 and 0.7 by default) and box AP at the same thresholds, by the
    released SDS code's protocol (module docstring), on any registered dataset with instance masks
    (polygons or RLE) and contiguous ``category_id``s. Results: ``{"segm": {"mAP@0.5": ...,
    "mAP@0.7": ..., "AP@0.5-<class>": ...}, "bbox": {...}}``, in percent.
    """

    def __init__(self, dataset_name: str, output_dir=None, thresholds: Sequence[float] = (0.5, 0.7),
                 ap_method: str = "voc07", distributed: bool = True):
        if not thresholds or any(not 0 < t <= 1 for t in thresholds):
            raise ValueError(f"SDSEvaluator: thresholds must be IoUs in (0, 1], got {thresholds!r}")
        if ap_method not in AP_METHODS:
            raise ValueError(f"SDSEvaluator: ap_method must be one of {AP_METHODS}, got {ap_method!r}")
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._thresholds = tuple(thresholds)
        self._ap_method = ap_method
        self._distributed = distributed
        self._class_names = MetadataCatalog.get(dataset_name).thing_classes
        self.reset()

    def reset(self):
        self._predictions = []  # per image: {"image_id", "instances": COCO-style result dicts}

    def process(self, inputs, outputs):
        batch = []  # recorded only when every output of the batch is valid
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            image = inp["image_id"]
            if not instances.has("pred_masks"):
                raise ValueError(f"SDSEvaluator: the output for image {image!r} has no pred_masks; "
                                 "mAP^r evaluates instance masks")
            finite = torch.isfinite(instances.scores)
            if not finite.all():
                raise ValueError(
                    f"SDSEvaluator: image {image!r} has non-finite detection scores "
                    f"{instances.scores[~finite].tolist()}; they rank the detections, so they must be finite"
                )
            # XYWH boxes and RLE masks, as detectron2's COCOEvaluator stores them
            batch.append({"image_id": image, "instances": instances_to_coco_json(instances, image)})
        self._predictions.extend(batch)

    def _ground_truth(self):
        """image id -> class -> {"segmentation": RLEs, "bbox": XYWH boxes}, non-crowd instances only."""
        gt = defaultdict(lambda: defaultdict(lambda: {"segmentation": [], "bbox": []}))
        for d in DatasetCatalog.get(self._dataset_name):
            h, w = d["height"], d["width"]
            for a in d.get("annotations", []):
                if a.get("iscrowd", 0):
                    continue
                segm = a["segmentation"]
                if isinstance(segm, list):
                    rle = mask_util.merge(mask_util.frPyObjects(segm, h, w))
                elif isinstance(segm.get("counts"), list):  # uncompressed RLE
                    rle = mask_util.frPyObjects(segm, h, w)
                else:
                    rle = segm
                instances = gt[d["image_id"]][a["category_id"]]
                instances["segmentation"].append(rle)
                instances["bbox"].append(list(BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYWH_ABS)))
        return gt

    def evaluate(self):
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        if self._output_dir:
            self._save(predictions)
        gt = self._ground_truth()
        results = OrderedDict()
        for task in ("segm", "bbox"):
            results[task] = self._evaluate_task(task, predictions, gt)
        logger.info("Evaluation results for segm (SDS mAP^r):\n" + create_small_table(
            {k: v for k, v in results["segm"].items() if k.startswith("mAP")}))
        logger.info("Evaluation results for bbox (SDS protocol):\n" + create_small_table(
            {k: v for k, v in results["bbox"].items() if k.startswith("mAP")}))
        return copy.deepcopy(results)

    def _save(self, predictions):
        """The detections in COCO's result format, written whole or not at all."""
        PathManager.mkdirs(self._output_dir)
        path = os.path.join(self._output_dir, "sds_instances_results.json")
        with PathManager.open(path + ".tmp", "w") as f:
            json.dump([d for p in predictions for d in p["instances"]], f)
        os.replace(path + ".tmp", path)

    def _evaluate_task(self, task: str, predictions, gt) -> Dict[str, float]:
        field = {"segm": "segmentation", "bbox": "bbox"}[task]
        # Per class: detections (image, score) and per image the IoU matrix with its GT of that class.
        dets = defaultdict(lambda: ([], []))
        ious = defaultdict(dict)
        for p in predictions:
            img = p["image_id"]
            by_class = defaultdict(list)
            for d in p["instances"]:
                by_class[d["category_id"]].append(d)
            for c, class_dets in by_class.items():
                images, scores = dets[c]
                images.extend([img] * len(class_dets))
                scores.extend(d["score"] for d in class_dets)
                gt_instances = gt[img][c][field] if img in gt and c in gt[img] else []
                if gt_instances:
                    iou = mask_util.iou([d[field] for d in class_dets], gt_instances, [0] * len(gt_instances))
                    ious[c][img] = np.asarray(iou).reshape(len(class_dets), len(gt_instances))
        num_gt = defaultdict(dict)
        for img, per_class in gt.items():
            for c, instances in per_class.items():
                num_gt[c][img] = len(instances[field])

        out = {}
        for t in self._thresholds:
            aps = {}
            for c, name in enumerate(self._class_names):
                if sum(num_gt[c].values()) == 0:
                    continue  # AP undefined without GT instances
                images, scores = dets[c]
                tp, n = match_detections(np.array(images, dtype=object), np.array(scores, dtype=np.float64),
                                         ious[c], num_gt[c], t)
                aps[name] = 100 * average_precision(tp, n, self._ap_method)
            out[f"mAP@{t:g}"] = float(np.mean(list(aps.values()))) if aps else float("nan")
            out.update({f"AP@{t:g}-{name}": ap for name, ap in aps.items()})
        return out
