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
import logging
from collections import OrderedDict, defaultdict
from typing import Dict, List, Sequence

import numpy as np
import pycocotools.mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.logger import create_small_table

__all__ = ["SDSEvaluator", "average_precision", "match_detections"]

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
    """AP of detections sorted by decreasing score (``tp``: true positive or not) over ``num_gt`` GT."""
    if num_gt == 0:
        return float("nan")
    ctp = np.cumsum(tp)
    recall = ctp / num_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    if method == "voc07":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    if method == "coco101":
        # COCOeval: precision made monotone from the right, read at the first recall >= t.
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))
    raise ValueError(f"average_precision: method must be 'voc07' or 'coco101', got {method!r}")


def _xywh(boxes: np.ndarray) -> List[List[float]]:
    return [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in boxes.tolist()]


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
        average_precision(np.zeros(0, dtype=bool), 1, ap_method)  # validates ap_method
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._thresholds = tuple(thresholds)
        self._ap_method = ap_method
        self._distributed = distributed
        self._class_names = MetadataCatalog.get(dataset_name).thing_classes
        self.reset()

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            masks = instances.pred_masks.numpy()
            self._predictions.append({
                "image_id": inp["image_id"],
                "boxes": instances.pred_boxes.tensor.numpy(),
                "scores": instances.scores.numpy(),
                "classes": instances.pred_classes.numpy(),
                "masks": [mask_util.encode(np.array(m[:, :, None], dtype=np.uint8, order="F"))[0] for m in masks],
            })

    def _ground_truth(self):
        """image id -> class -> (list of RLEs, list of XYWH boxes), non-crowd instances only."""
        gt = defaultdict(lambda: defaultdict(lambda: ([], [])))
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
                box = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYWH_ABS)
                masks, boxes = gt[d["image_id"]][a["category_id"]]
                masks.append(rle)
                boxes.append(list(box))
        return gt

    def evaluate(self):
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        gt = self._ground_truth()
        results = OrderedDict()
        for task in ("segm", "bbox"):
            results[task] = self._evaluate_task(task, predictions, gt)
        logger.info("Evaluation results for segm (SDS mAP^r):\n" + create_small_table(
            {k: v for k, v in results["segm"].items() if k.startswith("mAP")}))
        logger.info("Evaluation results for bbox (SDS protocol):\n" + create_small_table(
            {k: v for k, v in results["bbox"].items() if k.startswith("mAP")}))
        return copy.deepcopy(results)

    def _evaluate_task(self, task: str, predictions, gt) -> Dict[str, float]:
        # Per class: detections (image, score) and per image the IoU matrix with its GT of that class.
        dets = defaultdict(lambda: ([], []))
        ious = defaultdict(dict)
        for p in predictions:
            img = p["image_id"]
            for c in np.unique(p["classes"]):
                sel = np.flatnonzero(p["classes"] == c)
                images, scores = dets[int(c)]
                images.extend([img] * len(sel))
                scores.extend(p["scores"][sel].tolist())
                gt_masks, gt_boxes = gt[img][int(c)] if img in gt and int(c) in gt[img] else ([], [])
                if not gt_masks:
                    continue
                if task == "segm":
                    dt = [p["masks"][i] for i in sel]
                    iou = mask_util.iou(dt, gt_masks, [0] * len(gt_masks))
                else:
                    iou = mask_util.iou(_xywh(p["boxes"][sel]), gt_boxes, [0] * len(gt_boxes))
                ious[int(c)][img] = np.asarray(iou).reshape(len(sel), len(gt_masks))
        num_gt = defaultdict(dict)
        for img, per_class in gt.items():
            for c, (masks, _) in per_class.items():
                num_gt[c][img] = len(masks)

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
