"""Mutants of HTC (Chen et al., CVPR 2019; the SCNet paper's Eq. 2) and of the mask ensemble it shares
with the Cascade baseline."""
from mutants import Mutant

HTC = "projects/cascades/modeling/htc.py"
TESTS = "tests/modeling/test_htc.py"
TRAIN_TEST = f"{TESTS}::test_mask_stage_t_trains_on_box_stage_t_regressed_boxes_with_information_flow"

MUTANTS = [
    Mutant(
        name="htc_not_interleaved",
        concept="interleaved execution: mask stage t is trained on the boxes regressed by box stage t",
        path=HTC,
        old="regressed = self.box_predictor[t].predict_boxes(stage.predictions, stage.proposals)",
        new="regressed = [p.proposal_boxes.tensor for p in stage.proposals]",
        tests=[TRAIN_TEST],
    ),
    Mutant(
        name="htc_relabelled_at_the_first_stages_iou",
        concept="interleaved execution: the regressed boxes are labelled at stage t's IoU (0.5/0.6/0.7)",
        path=HTC,
        old="proposals = self._match_and_label_boxes(proposals, t, targets)",
        new="proposals = self._match_and_label_boxes(proposals, 0, targets)",
        tests=[TRAIN_TEST],
    ),
    Mutant(
        name="htc_no_information_flow",
        concept="mask information flow: head t adds a 1x1 conv of head t-1's conv features",
        path="projects/cascades/modeling/htc_mask_head.py",
        old="x = x + self.prev_stage_proj(prev_features)",
        new="x = x + 0 * self.prev_stage_proj(prev_features)",
        tests=["tests/modeling/test_scnet_heads.py::test_htc_mask_head_information_flow", TRAIN_TEST],
    ),
    Mutant(
        name="htc_mask_loss_weight_ignored",
        concept="the mask heads' loss_weight scales HTC's mask losses (issue 9's defect)",
        path=HTC,
        old="mask_rcnn_loss(logits, fg, head.vis_period) * head.loss_weight",
        new="mask_rcnn_loss(logits, fg, head.vis_period)",
        tests=["tests/modeling/test_loss_weights.py::test_each_loss_weight_scales_exactly_its_losses[htc]"],
    ),
    Mutant(
        name="htc_mask_stage_weights_dropped",
        concept="HTC's loss: mask stage t weighted by alpha_t",
        path=HTC,
        old='losses[f"loss_mask_stage{t}"] = loss * self.stage_loss_weights[t]',
        new='losses[f"loss_mask_stage{t}"] = loss',
        tests=[TRAIN_TEST],
    ),
    Mutant(
        name="htc_mask_ensemble_last_head_only",
        concept="mask ensemble (HTC, Cascade): the mean of the heads' mask probabilities",
        path="projects/cascades/modeling/semantic_cascade_roi_heads.py",
        old="summed = probs if summed is None else [a + b for a, b in zip(summed, probs)]",
        new="summed = [p * len(logits_per_head) for p in probs]",
        tests=[f"{TESTS}::test_inference_averages_the_chained_heads",
               "tests/modeling/test_scnet_roi_heads.py::"
               "test_cascade_mask_ensemble_is_the_mean_of_the_heads_probabilities"],
    ),
    Mutant(
        name="htc_mask_of_the_last_head_only",
        concept="mask ensemble at test (the papers, mmdetection 2): all chained heads averaged",
        path=HTC,
        old="if not self.mask_ensemble:",
        new="if True:",
        tests=[f"{TESTS}::test_inference_averages_the_chained_heads[True]"],
    ),
    Mutant(
        name="htc_mask_ensemble_off_ignored",
        concept="option mask_ensemble=False: the last head's mask only (mmdetection 3.x)",
        path=HTC,
        old="if not self.mask_ensemble:",
        new="if False:",
        tests=[f"{TESTS}::test_inference_averages_the_chained_heads[False]"],
    ),
]
