"""Mutants of the SDS evaluator: mAP^r as the released SDS/MNC evaluation computes it."""
from mutants import Mutant

SDS = "projects/cascades/evaluation/sds_evaluation.py"
TESTS = "tests/evaluation/test_sds_evaluation.py"

MUTANTS = [
    Mutant(
        name="sds_area_under_the_curve",
        concept="AP is the VOC07 11-point interpolated precision",
        path=SDS,
        old="voc_ap(recall, precision, use_07_metric=True)",
        new="voc_ap(recall, precision, use_07_metric=False)",
        tests=[f"{TESTS}::test_hand_computed_duplicates_and_thresholds"],
    ),
    Mutant(
        name="sds_gt_matched_twice",
        concept="each GT instance is matched once: a duplicate detection is a false positive",
        path=SDS,
        old="if overlaps[best] >= thresh and not matched[img][best]:",
        new="if overlaps[best] >= thresh:",
        tests=[f"{TESTS}::test_hand_computed_duplicates_and_thresholds"],
    ),
    Mutant(
        name="sds_falls_back_to_the_second_best_gt",
        concept="no fall-back: a detection whose best GT is taken is a false positive (COCO falls back)",
        path=SDS,
        old="overlaps = ious[img][row[i]]",
        new="overlaps = np.where(matched[img], -1.0, ious[img][row[i]])",
        tests=[f"{TESTS}::test_no_fall_back_to_the_second_best_gt"],
    ),
    Mutant(
        name="sds_box_iou_for_masks",
        concept="mAP^r matches by mask IoU, not box IoU",
        path=SDS,
        old='field = {"segm": "segmentation", "bbox": "bbox"}[task]',
        new='field = {"segm": "bbox", "bbox": "bbox"}[task]',
        tests=[f"{TESTS}::test_mask_iou_not_box_iou"],
    ),
    Mutant(
        name="sds_nan_scores_accepted",
        concept="scores rank the detections: NaN scores are rejected, naming the image",
        path=SDS,
        old="            if not finite.all():\n",
        new="            if False:\n",
        tests=[f"{TESTS}::test_nan_scores_are_rejected_naming_the_image"],
    ),
]
