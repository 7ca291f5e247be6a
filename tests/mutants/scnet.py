"""Mutants of SCNet (Vu et al., AAAI 2021) and the parts it shares with HTC and the Cascade baseline:
sample consistency, the residual mask head, feature relay, global context, the semantic branch, the
loss weights of Eqs. (3)-(4), score averaging and the labelling of later stages' samples; and the
released code's behaviour where the paper is silent (docs/FIDELITY.md)."""
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
RESIDUAL_TEST = f"{HEAD_TESTS}::test_residual_pairs_skip_every_two_convs"
RESIDUAL_HEADS_TEST = f"{HEAD_TESTS}::test_every_residual_head_takes_relu_after_residual"
FUSION_TEST = f"{HEAD_TESTS}::test_semantic_fusion_resizes_then_projects_each_level_with_aligned_corners"
SCORES_TEST = (f"{ROI_TESTS}::"
               "test_scores_are_the_mean_of_the_three_stage_classifiers_with_the_last_stages_boxes")
ADD_GT_TEST = f"{ROI_TESTS}::test_later_stages_get_the_gt_boxes_instead_of_those_regressed_from_them"
HTC_TRAIN_TEST = ("tests/modeling/test_htc.py::"
                  "test_mask_stage_t_trains_on_box_stage_t_regressed_boxes_with_information_flow")

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
        old="out = self.conv2(F.relu(self.conv1(x))) + x",
        new="out = self.conv2(F.relu(self.conv1(x)))",
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
        tests=[f"{BOX_CONTEXT_TEST}[scnet-from_mask_resolution]"],
    ),
    Mutant(
        name="scnet_semantic_not_added",
        concept="semantic branch: the embedding, RoI-pooled at stride 8, is added to the RoI features",
        path=HEADS,
        old="roi_features = roi_features + pool_semantic(context.semantic, boxes)",
        new="roi_features = roi_features + 0 * pool_semantic(context.semantic, boxes)",
        tests=[f"{BOX_CONTEXT_TEST}[cascade_semantic-from_mask_resolution]"],
    ),
    Mutant(
        name="scnet_context_not_added_to_mask_features",
        concept="global context and semantic embedding are added to the mask RoI features too",
        path=HEADS,
        old="return self._fuse_context(x, boxes, context, self._semantic_mask_features)",
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
        concept="test: each stage's own classifier, their scores averaged (Cascade R-CNN)",
        path=HEADS,
        old="predictions = self.box_predictor[stage](box_features)",
        new="predictions = self.box_predictor[-1](box_features)",
        tests=[SCORES_TEST],
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
    # The released code where the paper is silent; detectron2's behaviour is the option's other setting.
    Mutant(
        name="scnet_relu_after_every_residual_sum",
        concept="released residual pair (SimplifiedBasicBlock): no ReLU after the sum",
        path=f"{MODELING}/residual_convs.py",
        old="return F.relu(out) if self.relu_after_residual else out",
        new="return F.relu(out)",
        tests=[f"{RESIDUAL_TEST}[False]", f"{RESIDUAL_HEADS_TEST}[False]",
               f"{HEAD_TESTS}::test_scnet_mask_head_is_twelve_convs_with_a_skip_every_two"],
    ),
    Mutant(
        name="scnet_relu_after_residual_ignored",
        concept="option relu_after_residual=True: a ReLU after each pair's sum (a ResNet BasicBlock)",
        path=f"{MODELING}/residual_convs.py",
        old="return F.relu(out) if self.relu_after_residual else out",
        new="return out",
        tests=[f"{RESIDUAL_TEST}[True]", f"{RESIDUAL_HEADS_TEST}[True]"],
    ),
    Mutant(
        name="scnet_semantic_head_drops_relu_after_residual",
        concept="the semantic head builds its residual pairs with relu_after_residual",
        path=f"{MODELING}/semantic_head.py",
        old="ConvStack(conv_dim, conv_dim, num_convs, residual, norm, relu_after_residual)",
        new="ConvStack(conv_dim, conv_dim, num_convs, residual, norm)",
        tests=[f"{RESIDUAL_HEADS_TEST}[True]"],
    ),
    Mutant(
        name="scnet_semantic_lateral_before_resize",
        concept="released semantic fusion: each level resized first, then its 1x1 conv + ReLU",
        path=f"{MODELING}/semantic_head.py",
        old="if self.resize_before_lateral:",
        new="if not self.resize_before_lateral:",
        tests=[FUSION_TEST],
    ),
    Mutant(
        name="scnet_semantic_resize_corners_not_aligned",
        concept="released semantic fusion: bilinear resize with align_corners=True",
        path=f"{MODELING}/semantic_head.py",
        old='mode="bilinear", align_corners=self.align_corners',
        new='mode="bilinear", align_corners=False',
        tests=[f"{FUSION_TEST}[True-True]"],
    ),
    Mutant(
        name="scnet_semantic_box_features_max_pooled",
        concept="released box branch: the embedding RoI-aligned at 14 x 14, averaged down to 7 x 7",
        path=HEADS,
        old="return _average_down(x, self.box_pooler.output_size)",
        new="return F.adaptive_max_pool2d(x, self.box_pooler.output_size)",
        tests=[f"{BOX_CONTEXT_TEST}[scnet-from_mask_resolution]"],
    ),
    Mutant(
        name="scnet_scores_averaged_as_probabilities",
        concept="released test scores: the mean of the stages' logits, then one softmax",
        path=HEADS,
        old='if self.score_averaging == "logits":',
        new="if False:",
        tests=[f"{SCORES_TEST}[logits]"],
    ),
    Mutant(
        name="scnet_gt_not_added_to_later_stages",
        concept="released sampling: the GT boxes are added to the proposals of every stage",
        path=HEADS,
        old="proposals = [_with_gt_boxes(p, t) for p, t in zip(proposals, targets)]",
        new="proposals = list(proposals)",
        tests=[f"{ADD_GT_TEST}[True]", f"{HTC_TRAIN_TEST}[True]"],
    ),
    Mutant(
        name="scnet_boxes_regressed_from_gt_kept",
        concept="released sampling: the boxes regressed from GT boxes leave the next stage's proposals",
        path=HEADS,
        old="boxes = [b[~p.from_gt] for b, p in zip(boxes, sources)]",
        new="boxes = list(boxes)",
        tests=[f"{ADD_GT_TEST}[True]", f"{HTC_TRAIN_TEST}[True]"],
    ),
    Mutant(
        name="scnet_masks_computed_with_mask_on_off",
        concept="inference with roi_heads.mask_on off (detectron2's TTA): the boxes, no mask branch",
        path=HEADS,
        old="            if not self.mask_on:\n                return box_output, {}\n",
        new="",
        tests=[f"{ROI_TESTS}::test_mask_on_off_gives_the_boxes_only",
               f"{ROI_TESTS}::"
               "test_detectron2s_test_time_augmentation_runs_the_mask_branch_on_the_merged_boxes_only"],
    ),
]
