"""Mutants of SCNet (Vu et al., AAAI 2021) and the parts it shares with HTC and the Cascade baseline:
sample consistency, the residual mask head, feature relay, global context, the semantic branch, the
loss weights of Eqs. (3)-(4), score averaging and the labelling of later stages' samples."""
from mutants import Mutant

MODELING = "projects/cascades/modeling"
SCNET = f"{MODELING}/scnet.py"
HEADS = f"{MODELING}/semantic_cascade_roi_heads.py"
ROI_TESTS = "tests/modeling/test_scnet_roi_heads.py"
HEAD_TESTS = "tests/modeling/test_scnet_heads.py"
WEIGHT_TESTS = "tests/modeling/test_loss_weights.py"
SC_TEST = f"{ROI_TESTS}::test_mask_heads_are_trained_on_the_last_box_stages_positives"
BOX_CONTEXT_TEST = f"{ROI_TESTS}::test_every_stages_box_head_sees_pooled_features_plus_image_context"
SEGMENT_TEST = f"{ROI_TESTS}::test_scnet_segments_the_final_detections"

MUTANTS = [
    Mutant(
        name="scnet_mask_head_on_first_stage_samples",
        concept="sample consistency: the mask head is trained on the last box stage's positives",
        path=SCNET,
        old="[last if sample_consistent else t for t in range(num_heads)]",
        new="[0 if sample_consistent else t for t in range(num_heads)]",
        tests=[SC_TEST],
    ),
    Mutant(
        name="scnet_cascade_heads_on_last_stage_samples",
        concept="Cascade Mask R-CNN (the baseline): mask head t is trained on box stage t's positives",
        path=SCNET,
        old="[last if sample_consistent else t for t in range(num_heads)]",
        new="[last for t in range(num_heads)]",
        tests=[f"{ROI_TESTS}::test_cascade_baseline_mask_head_t_gets_stage_t_positives"],
    ),
    Mutant(
        name="scnet_mask_head_skip_every_conv_pair_dropped",
        concept="12-conv mask head with a skip connection after every two convs",
        path=f"{MODELING}/residual_convs.py",
        old="return F.relu(out + x)",
        new="return F.relu(out)",
        tests=[f"{HEAD_TESTS}::test_scnet_mask_head_is_twelve_convs_with_a_skip_every_two"],
    ),
    Mutant(
        name="scnet_relay_not_bilinear_aligned",
        concept="feature relay: fc -> 256 x 7 x 7 -> bilinear x2 (aligned corners, as released) -> 14 x 14",
        path=f"{MODELING}/feature_relay.py",
        old='mode="bilinear", align_corners=True',
        new='mode="bilinear", align_corners=False',
        tests=[f"{HEAD_TESTS}::test_feature_relay_is_fc_reshape_and_bilinear_x2"],
    ),
    Mutant(
        name="scnet_relay_of_the_wrong_samples",
        concept="feature relay in training: the box features of the positive samples only",
        path=SCNET,
        old="stages[source].box_features[is_fg]",
        new="stages[source].box_features[: int(is_fg.sum())]",
        tests=[f"{ROI_TESTS}::test_feature_relay_relays_only_the_positives"],
    ),
    Mutant(
        name="scnet_relay_not_added_at_test",
        concept="feature relay at test: the relayed box features are added to the mask features",
        path=SCNET,
        old="head_input = x + self.feature_relays[i](relay_inputs[source])",
        new="head_input = x + 0 * self.feature_relays[i](relay_inputs[source])",
        tests=[SEGMENT_TEST],
    ),
    Mutant(
        name="scnet_relay_from_the_first_box_head_at_test",
        concept="feature relay at test: the last stage's box head recomputed on the detections",
        path=SCNET,
        old="self._box_head_features(box_in, boxes, source, context)",
        new="self._box_head_features(box_in, boxes, 0, context)",
        tests=[SEGMENT_TEST],
    ),
    Mutant(
        name="scnet_context_fusion_identity",
        concept="semantic embedding and global-context vector added to the RoI features (the issue's case)",
        path=HEADS,
        old="        if context.semantic is not None:\n",
        new="        return roi_features\n        if context.semantic is not None:\n",
        tests=[BOX_CONTEXT_TEST],
    ),
    Mutant(
        name="scnet_global_context_not_added",
        concept="global context: the pooled vector is added to every box and mask RoI feature",
        path=HEADS,
        old="roi_features = roi_features + per_roi[:, :, None, None]",
        new="roi_features = roi_features + 0 * per_roi[:, :, None, None]",
        tests=[f"{BOX_CONTEXT_TEST}[scnet]"],
    ),
    Mutant(
        name="scnet_semantic_not_added",
        concept="semantic branch: the embedding, RoI-pooled at stride 8, is added to the RoI features",
        path=HEADS,
        old="roi_features = roi_features + semantic_pooler([context.semantic], boxes)",
        new="roi_features = roi_features + 0 * semantic_pooler([context.semantic], boxes)",
        tests=[f"{BOX_CONTEXT_TEST}[cascade]"],
    ),
    Mutant(
        name="scnet_context_not_added_to_mask_features",
        concept="global context and semantic embedding are added to the mask RoI features too",
        path=HEADS,
        old='return self._fuse_context(x, boxes, context, getattr(self, "semantic_mask_pooler", None))',
        new="return x",
        tests=[SC_TEST],
    ),
    Mutant(
        name="scnet_global_context_max_pooled",
        concept="global context: global average pooling of the residual stack on the top FPN level",
        path=f"{MODELING}/global_context_head.py",
        old="F.adaptive_avg_pool2d(",
        new="F.adaptive_max_pool2d(",
        tests=[f"{HEAD_TESTS}::test_global_context_is_the_mean_of_the_residual_stack_on_its_level"],
    ),
    Mutant(
        name="scnet_global_context_targets_first_class_only",
        concept="global context: multi-label targets are the set of classes in the image",
        path=f"{MODELING}/global_context_head.py",
        old="targets[i, inst.gt_classes] = 1.0",
        new="targets[i, inst.gt_classes[:1]] = 1.0",
        tests=[f"{HEAD_TESTS}::test_global_context_targets_are_the_image_class_sets_and_the_loss_is_3_bce"],
    ),
    Mutant(
        name="scnet_global_context_loss_unweighted",
        concept="global context: BCE loss times lambda = 3",
        path=f"{MODELING}/global_context_head.py",
        old='{"loss_glbctx": loss * self.loss_weight}',
        new='{"loss_glbctx": loss}',
        tests=[f"{HEAD_TESTS}::test_global_context_targets_are_the_image_class_sets_and_the_loss_is_3_bce"],
    ),
    Mutant(
        name="scnet_semantic_level_left_out",
        concept="semantic branch: all FPN levels are fused at stride 8",
        path=f"{MODELING}/semantic_head.py",
        old="for name, lateral in zip(self.in_features, self.lateral_convs):",
        new="for name, lateral in zip(self.in_features[:-1], self.lateral_convs):",
        tests=[f"{HEAD_TESTS}::test_semantic_head_fuses_every_level_at_stride_8"],
    ),
    Mutant(
        name="scnet_semantic_loss_unweighted",
        concept="semantic branch: cross-entropy times gamma = 0.2",
        path=f"{MODELING}/semantic_head.py",
        old='{"loss_semantic_seg": loss * self.loss_weight}',
        new='{"loss_semantic_seg": loss}',
        tests=[f"{HEAD_TESTS}::test_semantic_loss_is_0_2_cross_entropy_on_subsampled_labels_ignoring_255"],
    ),
    Mutant(
        name="scnet_semantic_ignore_label_counted",
        concept="semantic branch: pixels labelled 255 are ignored",
        path=f"{MODELING}/semantic_head.py",
        old="loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value)",
        new="loss = F.cross_entropy(logits, targets.clamp(max=logits.shape[1] - 1))",
        tests=[f"{HEAD_TESTS}::test_semantic_loss_is_0_2_cross_entropy_on_subsampled_labels_ignoring_255"],
    ),
    Mutant(
        name="scnet_stage_weights_all_first",
        concept="Eq. (3): stage t's box losses weighted by alpha_t = [1, 0.5, 0.25]",
        path=HEADS,
        old='self.stage_loss_weights[int(name.rsplit("_stage", 1)[1])]',
        new="self.stage_loss_weights[0]",
        tests=[WEIGHT_TESTS],
    ),
    Mutant(
        name="scnet_mask_loss_weight_not_the_sum",
        concept="Eq. (4): the one mask head's loss weight beta is the sum of the stage weights (1.75)",
        path=SCNET,
        old="[sum(self.stage_loss_weights)] if num_heads == 1",
        new="[self.stage_loss_weights[-1]] if num_heads == 1",
        tests=[f"{WEIGHT_TESTS}::test_each_loss_weight_scales_exactly_its_losses[scnet]"],
    ),
    Mutant(
        name="scnet_scores_of_the_last_classifier",
        concept="test: each stage's own classifier, their probabilities averaged (Cascade R-CNN)",
        path=HEADS,
        old="predictions = self.box_predictor[stage](box_features)",
        new="predictions = self.box_predictor[-1](box_features)",
        tests=[f"{ROI_TESTS}::"
               "test_scores_are_the_mean_of_the_three_stage_classifiers_with_the_last_stages_boxes"],
    ),
    Mutant(
        name="scnet_later_stages_not_subsampled",
        concept="released sampling: stages > 0 subsample 512 RoIs, 25% positives, like the first",
        path=HEADS,
        old="            if self.sample_every_stage:\n",
        new="            if False:\n",
        tests=[f"{ROI_TESTS}::test_sample_every_stage_subsamples_later_stages_like_the_first"],
    ),
    Mutant(
        name="scnet_later_stages_masks_of_the_wrong_gt",
        concept="masks of later stages' samples are their matched GT's masks",
        path=HEADS,
        old="proposals_per_image.set(name, value[idxs])",
        new="proposals_per_image.set(name, value[idxs.flip(0)])",
        tests=[SC_TEST],
    ),
]
