"""Mutants of the test-time augmentation with masks (issue 13, part 1; docs/TTA.md): detectron2's merge
(boxes merged with the model's NMS settings, then masks on them under every augmentation), mmdetection 2's
per-RoI merge (proposals merged, every RoI's boxes and scores averaged over the augmentations), MNC's
merge (all candidates through one NMS and mask voting), the test.aug settings and their entry points."""
from mutants import Mutant

TTA = "projects/cascades/modeling/test_time_augmentation.py"
HEADS = "projects/cascades/modeling/semantic_cascade_roi_heads.py"
ENGINE = "projects/cascades/engine/test_aug.py"
PREDICTOR = "projects/cascades/engine/predictor.py"
TRAINER = "projects/cascades/engine/trainer.py"
TESTS = "tests/modeling/test_tta.py"
ENGINE_TESTS = "tests/engine/test_test_aug.py"
IDENTITY = f"{TESTS}::test_identity_tta_is_plain_inference"
FLIP = f"{TESTS}::test_flip_tta_commutes_with_mirroring"
RUNS = f"{TESTS}::test_flip_and_two_scales_run"
PER_ROI_MEAN = f"{TESTS}::test_mmdetection2_merge_averages_every_roi_over_the_augmentations"
PER_ROI_IDENTITY = f"{TESTS}::test_identity_mmdetection2_merge_is_plain_inference"
BAD_SETTINGS = f"{TESTS}::test_bad_settings_are_refused"

MUTANTS = [
    Mutant(
        name="tta_masks_not_predicted_on_merged_boxes",
        concept="detectron2's merge: masks predicted on the merged boxes under every augmentation, averaged",
        path=TTA,
        old='"MASK_ON": bool(getattr(heads, "mask_on", False)),',
        new='"MASK_ON": False,',
        tests=[f"{RUNS}[scnet]", f"{IDENTITY}[htc]"],
    ),
    Mutant(
        name="tta_merge_nms_threshold_not_the_models",
        concept="detectron2's merge: one per-class NMS of all augmentations' boxes at the model's threshold",
        path=TTA,
        old='"NMS_THRESH_TEST": predictor.test_nms_thresh',
        new='"NMS_THRESH_TEST": 1.0',
        tests=[f"{TESTS}::test_detectron2_merge_is_one_nms_with_the_models_settings"],
    ),
    Mutant(
        name="tta_merge_topk_not_the_models",
        concept="detectron2's merge keeps the model's detections per image",
        path=TTA,
        old='"DETECTIONS_PER_IMAGE": predictor.test_topk_per_image',
        new='"DETECTIONS_PER_IMAGE": 100',
        tests=[f"{TESTS}::test_detectron2_merge_is_one_nms_with_the_models_settings"],
    ),
    Mutant(
        name="tta_flip_ignored",
        concept="test.aug.flip: each size also flipped horizontally",
        path=TTA,
        old="max_size=int(max_size), flip=flip)",
        new="max_size=int(max_size), flip=False)",
        tests=[f"{FLIP}[scnet-detectron2]", f"{FLIP}[mnc-detectron2]"],
    ),
    Mutant(
        name="tta_per_roi_scores_not_averaged",
        concept="mmdetection 2's merge: every RoI's scores averaged over the augmentations",
        path=TTA,
        old="[torch.stack(scores).mean(0)]",
        new="[scores[0]]",
        tests=[PER_ROI_MEAN],
    ),
    Mutant(
        name="tta_per_roi_boxes_not_mapped_back",
        concept="mmdetection 2's merge: every augmentation's boxes mapped back to the original image first",
        path=TTA,
        old="boxes.append(_map_boxes(clipped.tensor.view(aug_boxes.shape), tfm.inverse()))",
        new="boxes.append(clipped.tensor.view(aug_boxes.shape))",
        tests=[PER_ROI_MEAN, f"{FLIP}[scnet-mmdetection2]"],
    ),
    Mutant(
        name="tta_per_roi_boxes_not_clipped",
        concept="mmdetection 2's merge: the boxes clipped to the augmented image before averaging",
        path=TTA,
        old="clipped.clip(size)",
        new="clipped.tensor",
        tests=[PER_ROI_MEAN],
    ),
    Mutant(
        name="tta_per_roi_proposals_not_merged",
        concept="mmdetection 2's merge_aug_proposals: one NMS over every augmentation's proposals",
        path=TTA,
        old="keep = batched_nms(boxes, logits, torch.zeros_like(logits, dtype=torch.long), rpn.nms_thresh)",
        new="keep = logits.argsort(descending=True)",
        tests=[f"{TESTS}::test_mmdetection2_merge_nms_of_every_augmentations_proposals"],
    ),
    Mutant(
        name="tta_per_roi_scores_of_the_last_stage",
        concept="mmdetection 2's merge averages the cascade's test scores (the stages' mean), as plain inference",
        path=HEADS,
        old="return list(zip(boxes, self._stage_scores(scores))), None",
        new="return list(zip(boxes, scores)), None",
        tests=[PER_ROI_IDENTITY],
    ),
    Mutant(
        name="tta_mnc_masks_not_unflipped",
        concept="MNC's merge: a flipped augmentation's masks mirrored back with their boxes",
        path=TTA,
        old="masks = masks.flip(-1)",
        new="masks = masks",
        tests=[f"{FLIP}[mnc-detectron2]"],
    ),
    Mutant(
        name="tta_mnc_boxes_not_mapped_back",
        concept="MNC's merge: every augmentation's candidates mapped back to the original image",
        path=TTA,
        old="return _map_boxes(class_boxes, inverse), probs, masks, _map_boxes(mask_boxes, inverse)",
        new="return class_boxes, probs, masks, mask_boxes",
        tests=[f"{IDENTITY}[mnc]"],
    ),
    Mutant(
        name="tta_mnc_one_augmentation_voted",
        concept="MNC's merge: the candidates of every augmentation go through one NMS and mask voting",
        path=TTA,
        old="*(torch.cat(c) for c in zip(*candidates))",
        new="*(c[0] for c in zip(*candidates))",
        tests=[f"{TESTS}::test_mnc_merges_the_candidates_of_every_augmentation_in_one_vote"],
    ),
    Mutant(
        name="tta_zero_size_accepted",
        concept="bad input: a non-positive test.aug size is refused naming the key",
        path=TTA,
        old="or value <= 0:",
        new="or value < 0:",
        tests=[BAD_SETTINGS, f"{ENGINE_TESTS}::test_bad_test_aug_is_refused"],
    ),
    Mutant(
        name="tta_no_augmentation_accepted",
        concept="bad input: test.aug.min_sizes without any size is refused naming the key",
        path=TTA,
        old="or len(min_sizes) == 0:",
        new=":",
        tests=[BAD_SETTINGS],
    ),
    Mutant(
        name="tta_flag_ignored",
        concept="train_net.py --tta enables test.aug",
        path=ENGINE,
        old='settings["enabled"] = settings["enabled"] or enable',
        new='settings["enabled"] = settings["enabled"]',
        tests=[f"{ENGINE_TESTS}::test_config_without_test_aug_gets_the_released_scales_of_its_test_size"],
    ),
    Mutant(
        name="tta_predictor_ignores_tta",
        concept="Predictor(cfg, tta=True) runs the model with test.aug's augmentation",
        path=PREDICTOR,
        old="self.model = tta_model(cfg, self.model)",
        new="pass",
        tests=[f"{ENGINE_TESTS}::test_predictor_with_tta"],
    ),
    Mutant(
        name="tta_eval_without_tta",
        concept="train_net.py --eval-only --tta also evaluates with test-time augmentation (_TTA results)",
        path=TRAINER,
        old='models["_TTA"] = tta_model(cfg, model)',
        new="pass",
        tests=[f"{ENGINE_TESTS}::test_train_net_eval_only_with_tta"],
    ),
]
