"""SDS evaluator: hand-computed mAP^r / box AP, and pycocotools' COCOeval where the definitions agree."""
import itertools
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode, Boxes, Instances

from cascades.evaluation.build import build_evaluator
from cascades.evaluation.sds_evaluation import SDSEvaluator, average_precision

H = W = 64
_names = itertools.count()


def rle_of_box(box):
    m = np.zeros((H, W), dtype=np.uint8, order="F")
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = 1
    rle = mask_util.encode(m[:, :, None])[0]
    rle["counts"] = rle["counts"].decode()
    return rle


def register(gt_per_image, classes=("a", "b"), evaluator_type="sds"):
    """gt_per_image: list of [(class, XYXY integer box)]; masks are the boxes filled."""
    name = f"sds_test_{next(_names)}"
    dicts = [
        {"file_name": f"{i}.jpg", "image_id": i, "height": H, "width": W, "annotations": [
            {"bbox": list(b), "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "segmentation": rle_of_box(b),
             "iscrowd": 0} for c, b in gts]}
        for i, gts in enumerate(gt_per_image)
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(classes), evaluator_type=evaluator_type)
    return name, dicts


def output(dets):
    """dets: list of (class, score, XYXY integer box) -> model output with box-filled masks."""
    inst = Instances((H, W))
    boxes = [b for _, _, b in dets]
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor([s for _, s, _ in dets], dtype=torch.float32)
    inst.pred_classes = torch.tensor([c for c, _, _ in dets], dtype=torch.int64)
    masks = torch.zeros(len(dets), H, W, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, y0:y1, x0:x1] = True
    inst.pred_masks = masks
    return {"instances": inst}


def evaluate(name, dets_per_image, **kwargs):
    ev = SDSEvaluator(name, distributed=False, **kwargs)
    ev.reset()
    for i, dets in enumerate(dets_per_image):
        ev.process([{"image_id": i}], [output(dets)])
    return ev.evaluate()


def test_hand_computed_duplicates_and_thresholds():
    name, _ = register([[(0, (0, 0, 20, 20))], [(0, (30, 30, 50, 50))]])
    res = evaluate(name, [
        [(0, 0.9, (0, 0, 20, 20)), (0, 0.8, (0, 0, 20, 20)), (1, 0.95, (0, 0, 20, 20))],  # a duplicate
        [(0, 0.7, (30, 30, 50, 42))],  # IoU 240 / 400 = 0.6
    ])
    # Sorted: TP, FP (GT taken), TP@0.5 / FP@0.7. Recall .5, .5, 1; precision 1, .5, 2/3.
    # 11-point @0.5: recall >= 0..0.5 -> 1 (6 points), 0.6..1 -> 2/3 (5 points). @0.7: 6 / 11.
    assert res["segm"]["AP@0.5-a"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)
    assert res["segm"]["AP@0.7-a"] == pytest.approx(100 * 6 / 11)
    assert "AP@0.5-b" not in res["segm"]  # no GT of class b: left out of the mean
    assert res["segm"]["mAP@0.5"] == res["segm"]["AP@0.5-a"]
    assert res["bbox"]["mAP@0.5"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)


def test_no_fall_back_to_the_second_best_gt():
    # d2's best GT is g1 (IoU 0.8 > 0.6 with g2), already taken by d1: a false positive, although its
    # IoU with g2 passes 0.5 (COCO's matching would take g2).
    name, _ = register([[(0, (0, 0, 20, 20)), (0, (8, 0, 28, 20))]])
    res = evaluate(name, [[(0, 0.9, (0, 0, 20, 20)), (0, 0.8, (2, 0, 22, 20))]])
    assert res["segm"]["AP@0.5-a"] == pytest.approx(100 * 6 / 11)


def test_mask_iou_not_box_iou():
    # Same box, but the detected mask covers half of the GT mask: box IoU 1, mask IoU 0.5.
    name, dicts = register([[(0, (0, 0, 20, 20))]])
    out = output([(0, 0.9, (0, 0, 20, 20))])
    out["instances"].pred_masks[0, :, 10:] = False
    ev = SDSEvaluator(name, distributed=False, thresholds=(0.5, 0.7))
    ev.process([{"image_id": 0}], [out])
    res = ev.evaluate()
    assert res["segm"]["mAP@0.5"] == pytest.approx(100) and res["segm"]["mAP@0.7"] == 0
    assert res["bbox"]["mAP@0.7"] == pytest.approx(100)


def test_nan_scores_are_rejected_naming_the_image():
    name, _ = register([[(0, (0, 0, 20, 20))]])
    ev = SDSEvaluator(name, distributed=False)
    out = output([(0, 0.9, (0, 0, 20, 20)), (0, 0.5, (2, 2, 20, 20))])
    out["instances"].scores[1] = float("nan")
    with pytest.raises(ValueError, match=r"image 7 has non-finite detection scores \[nan\]"):
        ev.process([{"image_id": 7}], [out])
    assert ev._predictions == []  # nothing recorded
    with pytest.raises(ValueError, match="image 7"):  # a batch is recorded whole or not at all
        ev.process([{"image_id": 6}, {"image_id": 7}], [output([(0, 0.9, (0, 0, 20, 20))]), out])
    assert ev._predictions == []
    out["instances"].remove("pred_masks")
    with pytest.raises(ValueError, match="image 7 has no pred_masks"):
        ev.process([{"image_id": 7}], [out])


def test_predictions_are_saved_in_cocos_result_format(tmp_path):
    name, _ = register([[(0, (0, 0, 20, 20))], []])
    ev = SDSEvaluator(name, output_dir=str(tmp_path), distributed=False)
    ev.process([{"image_id": 0}, {"image_id": 1}], [output([(1, 0.75, (4, 6, 20, 30))]), output([])])
    ev.evaluate()
    with open(tmp_path / "sds_instances_results.json") as f:
        (saved,) = json.load(f)
    assert {k: saved[k] for k in ("image_id", "category_id", "bbox", "score")} == {
        "image_id": 0, "category_id": 1, "bbox": [4.0, 6.0, 16.0, 24.0], "score": 0.75}
    mask = output([(1, 0.75, (4, 6, 20, 30))])["instances"].pred_masks[0].numpy()
    assert (mask_util.decode(saved["segmentation"]) == mask).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sds_instances_results.json"]


def test_average_precision_edge_cases():
    assert average_precision(np.array([True, True]), 2) == pytest.approx(1.0)
    assert average_precision(np.zeros(0, dtype=bool), 3) == 0.0
    assert np.isnan(average_precision(np.zeros(0, dtype=bool), 0))
    with pytest.raises(ValueError, match="method"):
        average_precision(np.array([True]), 1, "voc12")


def test_build_evaluator_picks_sds():
    name, _ = register([[(0, (0, 0, 20, 20))]])
    assert isinstance(build_evaluator(name), SDSEvaluator)


def _random_scene(rng, num_images=6, num_classes=3):
    """Non-ambiguous scenes: GT boxes in separate 16-px cells of a 4x4 grid; each detection overlaps
    at most one GT, so the released matching and COCO's agree."""
    gts, dets = [], []
    for _ in range(num_images):
        cells = rng.permutation(16)
        g, d = [], []
        for k, cell in enumerate(cells[: rng.randint(1, 6)]):
            x, y = 16 * (cell % 4), 16 * (cell // 4)
            c = int(rng.randint(num_classes))
            g.append((c, (x + 2, y + 2, x + 14, y + 14)))
            for _ in range(rng.randint(0, 3)):  # jittered detections, some of the wrong class
                j = rng.randint(-3, 4, size=4)
                box = (x + 2 + j[0], y + 2 + j[1], x + 14 + j[2], y + 14 + j[3])
                d.append((c if rng.rand() < 0.8 else int(rng.randint(num_classes)), float(rng.rand()), box))
        for cell in cells[6:8]:  # false positives in empty cells
            x, y = 16 * (cell % 4), 16 * (cell // 4)
            d.append((int(rng.randint(num_classes)), float(rng.rand()), (x + 3, y + 3, x + 13, y + 13)))
        gts.append(g)
        dets.append(d)
    return gts, dets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_cocoeval_where_the_definitions_agree(seed):
    rng = np.random.RandomState(seed)
    gts, dets = _random_scene(rng)
    name, dicts = register(gts, classes=("a", "b", "c"))
    res = evaluate(name, dets, ap_method="coco101")

    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "height": H, "width": W} for i in range(len(gts))],
        "categories": [{"id": c + 1, "name": n} for c, n in enumerate("abc")],
        "annotations": [
            {"id": n + 1, "image_id": i, "category_id": c + 1, "segmentation": rle_of_box(b), "iscrowd": 0,
             "area": float((b[2] - b[0]) * (b[3] - b[1])), "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for n, (i, c, b) in enumerate((i, c, b) for i, g in enumerate(gts) for c, b in g)
        ],
    }
    coco.createIndex()
    for task, iou_type in (("segm", "segm"), ("bbox", "bbox")):
        results = [{"image_id": i, "category_id": c + 1, "score": s, "segmentation": rle_of_box(b),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]} for i, d in enumerate(dets) for c, s, b in d]
        ev = COCOeval(coco, coco.loadRes(results), iou_type)
        ev.params.iouThrs = np.array([0.5, 0.7])
        ev.params.maxDets = [100]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
        ev.accumulate()
        for t_index, t in enumerate((0.5, 0.7)):
            for k, cname in enumerate("abc"):
                p = ev.eval["precision"][t_index, :, k, 0, 0]
                if (p == -1).all():
                    assert f"AP@{t:g}-{cname}" not in res[task]
                    continue
                assert res[task][f"AP@{t:g}-{cname}"] == pytest.approx(100 * p.mean(), abs=1e-6), (task, t, cname)
