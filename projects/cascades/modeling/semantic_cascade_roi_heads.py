"""Cascade ROI heads whose RoI features are enriched with whole-image context (HTC, SCNet)."""
from typing import Dict, List, NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_inference
from detectron2.structures import Boxes, Instances, pairwise_iou

from .fast_rcnn_inference import fast_rcnn_inference, with_globals
from .global_context_head import GlobalContextHead
from .options import check_bool, check_choice
from .semantic_head import FusedSemanticHead
from .shared_gt_masks import share_gt_masks

__all__ = ["SemanticCascadeROIHeads", "ImageContext", "CascadeStage"]


class ImageContext(NamedTuple):
    """Whole-image features shared by all RoIs of an image; None where the branch is off."""

    semantic: Optional[torch.Tensor]  # (N, C, H/s, W/s) semantic-branch embedding
    glbctx: Optional[torch.Tensor]  # (N, C) global-context vector


class CascadeStage(NamedTuple):
    """What one box stage saw and produced, kept for the mask branch."""

    predictions: tuple  # output of the stage's FastRCNNOutputLayers
    proposals: List[Instances]  # its input boxes (with gt labels in training)
    box_features: torch.Tensor  # box-head output, one row per proposal (feature relay)


class SemanticCascadeROIHeads(CascadeROIHeads):
    """
    :class:`CascadeROIHeads` plus two optional whole-image branches whose outputs are added to
    every box and mask RoI feature: HTC's semantic segmentation branch (its embedding is
    RoI-pooled at the mask/box resolution) and SCNet's global context branch (one vector per
    image). Stage losses are weighted explicitly by ``stage_loss_weights``, as in the HTC/SCNet
    papers, instead of detectron2's gradient scaling on the RoI features.

    Where the papers are silent the defaults are the released code's (mmdetection's
    ``HybridTaskCascadeRoIHead`` / ``SCNetRoIHead`` / ``CascadeRoIHead``, the same in the authors'
    mmdetection 2 fork thangvubk/SCNet); detectron2's behaviour is the other setting of each option.

    Subclasses define the mask branch by implementing ``_mask_losses`` and ``_mask_inference``.
    """

    @configurable
    def __init__(
        self,
        *,
        stage_loss_weights: List[float],
        semantic_head: Optional[nn.Module] = None,
        global_context_head: Optional[nn.Module] = None,
        sample_every_stage: bool = False,
        add_gt_every_stage: bool = True,
        score_averaging: str = "logits",
        semantic_box_pool: str = "from_mask_resolution",
        **kwargs,
    ):
        """
        Args:
            stage_loss_weights: weight of each box stage's losses (alpha_t).
            semantic_head: a :class:`FusedSemanticHead`, or None for no semantic branch.
            global_context_head: a :class:`GlobalContextHead`, or None for no global context.
            sample_every_stage: subsample the boxes of stages > 0 with the first stage's sampler
                (``batch_size_per_image``, ``positive_fraction``), as the released HTC/SCNet code
                does; False keeps all of them, as detectron2's Cascade R-CNN does.
            add_gt_every_stage: in training, the GT boxes are added to the proposals of every stage
                (and of HTC's mask re-labelling), and the boxes that the previous stage regressed
                from GT boxes are left out, as released (its sampler's ``add_gt_as_proposals``,
                ``mmdet/models/task_modules/samplers/base_sampler.py`` lines 99-110, in every stage's
                ``train_cfg``; ``BBoxHead.refine_bboxes``,
                ``mmdet/models/roi_heads/bbox_heads/bbox_head.py`` lines 671-675); False: stage 0
                only (detectron2's ``proposal_append_gt``), later stages keep every regressed box.
            score_averaging: at test, "logits": the stages' class logits are averaged and go through
                one softmax, as released (``CascadeRoIHead._refine_roi``,
                ``mmdet/models/roi_heads/cascade_roi_head.py`` lines 515-519, then the softmax of
                ``bbox_head.py`` line 526); "probabilities": detectron2's mean of the stages'
                probabilities.
            semantic_box_pool: how the semantic embedding is pooled for the box branch:
                "from_mask_resolution": RoI-aligned at the mask pooler's resolution (14) and
                average-pooled down to the box pooler's (7), as released (its semantic RoI extractor
                has the mask size; ``HybridTaskCascadeRoIHead._bbox_forward``,
                ``mmdet/models/roi_heads/htc_roi_head.py`` lines 98-104, and
                ``scnet_roi_head.py`` lines 155-161); "direct": RoI-aligned at the box resolution.
            Other arguments are those of :class:`CascadeROIHeads`; ``mask_head`` may be a list.
        """
        mask_head = kwargs.pop("mask_head", None)
        if mask_head is not None and not isinstance(mask_head, nn.Module):
            mask_head = nn.ModuleList(mask_head)  # one head per stage
        super().__init__(mask_head=mask_head, **kwargs)
        if len(stage_loss_weights) != self.num_cascade_stages:
            raise ValueError(
                f"stage_loss_weights has {len(stage_loss_weights)} entries, expected one per box "
                f"stage ({self.num_cascade_stages})"
            )
        self.stage_loss_weights = list(stage_loss_weights)
        self.semantic_head = semantic_head
        self.global_context_head = global_context_head
        self.sample_every_stage = sample_every_stage
        self.add_gt_every_stage = check_bool("add_gt_every_stage", add_gt_every_stage)
        self.score_averaging = check_choice(
            "score_averaging", score_averaging, ("logits", "probabilities")
        )
        self.semantic_box_pool = check_choice(
            "semantic_box_pool", semantic_box_pool, ("from_mask_resolution", "direct")
        )
        if semantic_head is not None:
            # The embedding is one map at the semantic head's stride; pool it like the FPN levels.
            scales = (1.0 / semantic_head.stride,)
            if self.mask_on:
                self.semantic_mask_pooler = ROIPooler(
                    self.mask_pooler.output_size, scales, 0, "ROIAlignV2"
                )
            elif semantic_box_pool == "from_mask_resolution":
                raise ValueError(
                    "semantic_box_pool='from_mask_resolution' pools at the mask pooler's resolution: "
                    "it needs the mask branch (mask_in_features, mask_pooler, mask_head); use 'direct'"
                )
            if semantic_box_pool == "direct":
                self.semantic_box_pooler = ROIPooler(
                    self.box_pooler.output_size, scales, 0, "ROIAlignV2"
                )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["stage_loss_weights"] = cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS
        ret["sample_every_stage"] = cfg.MODEL.ROI_BOX_CASCADE_HEAD.SAMPLE_EVERY_STAGE
        ret["add_gt_every_stage"] = cfg.MODEL.ROI_BOX_CASCADE_HEAD.ADD_GT_EVERY_STAGE
        ret["score_averaging"] = cfg.MODEL.ROI_BOX_CASCADE_HEAD.SCORE_AVERAGING
        ret["semantic_box_pool"] = cfg.MODEL.SEMANTIC_HEAD.BOX_POOL
        if cfg.MODEL.SEMANTIC_HEAD.ENABLED:
            ret["semantic_head"] = FusedSemanticHead(cfg, input_shape)
        if cfg.MODEL.GLOBAL_CONTEXT_HEAD.ENABLED:
            ret["global_context_head"] = GlobalContextHead(cfg, input_shape)
        return ret

    def forward(self, images, features, proposals, targets=None, sem_seg_targets=None):
        """
        Args:
            sem_seg_targets (Tensor or None): (N, H, W) int64 semantic labels of the padded batch,
                required in training when the semantic branch is on.
            Other arguments as in :meth:`CascadeROIHeads.forward`.
        """
        del images
        if self.training and not targets:
            raise ValueError("targets (gt Instances per image) are required in training")
        if self.training:
            targets = share_gt_masks(targets)  # every stage's samples index the GT masks, not copy them
        context, losses = self._image_context(features, targets, sem_seg_targets)
        if self.training:
            proposals = self.label_and_sample_proposals(proposals, targets)
        box_output, stages = self._run_cascade(features, proposals, context, targets)
        if not self.training:
            # mask_on off (e.g. by detectron2's GeneralizedRCNNWithTTA): the boxes only.
            if not self.mask_on:
                return box_output, {}
            return self._mask_inference(features, box_output, context), {}
        losses.update(self._weight_stage_losses(box_output))
        losses.update(self._mask_losses(features, stages, context, targets))
        return proposals, losses

    def forward_with_given_boxes(self, features, instances):
        assert not self.training
        if not self.mask_on:
            return instances
        context, _ = self._image_context(features)
        return self._mask_inference(features, instances, context)

    def _image_context(self, features, targets=None, sem_seg_targets=None):
        semantic = glbctx = None
        losses: Dict[str, torch.Tensor] = {}
        if self.semantic_head is not None:
            logits, semantic = self.semantic_head(features)
            if self.training:
                sem_seg_targets = self.semantic_head.check_targets(sem_seg_targets)
                losses.update(self.semantic_head.losses(logits, sem_seg_targets))
        if self.global_context_head is not None:
            logits, glbctx = self.global_context_head(features)
            if self.training:
                losses.update(self.global_context_head.losses(logits, targets))
        return ImageContext(semantic, glbctx), losses

    def _fuse_context(self, roi_features, boxes: List[Boxes], context: ImageContext, pool_semantic):
        """Adds the semantic embedding RoI-pooled by ``pool_semantic`` and the image's context vector
        to RoI features."""
        if context.semantic is not None:
            roi_features = roi_features + pool_semantic(context.semantic, boxes)
        if context.glbctx is not None:
            # Each image's vector repeated for its RoIs (repeat counts known on the host: no GPU sync).
            per_roi = torch.cat([v.expand(len(b), -1) for v, b in zip(context.glbctx, boxes)])
            roi_features = roi_features + per_roi[:, :, None, None]
        return roi_features

    def _box_head_features(self, features, boxes: List[Boxes], stage: int, context) -> torch.Tensor:
        x = self.box_pooler(features, boxes)
        x = self._fuse_context(x, boxes, context, self._semantic_box_features)
        return self.box_head[stage](x)

    def _mask_roi_features(self, features, boxes: List[Boxes], context) -> torch.Tensor:
        x = self.mask_pooler([features[f] for f in self.mask_in_features], boxes)
        return self._fuse_context(x, boxes, context, self._semantic_mask_features)

    def _semantic_mask_features(self, semantic: torch.Tensor, boxes: List[Boxes]) -> torch.Tensor:
        return self.semantic_mask_pooler([semantic], boxes)

    def _semantic_box_features(self, semantic: torch.Tensor, boxes: List[Boxes]) -> torch.Tensor:
        """The semantic embedding pooled for the box branch (``semantic_box_pool``)."""
        if self.semantic_box_pool == "direct":
            return self.semantic_box_pooler([semantic], boxes)
        x = self._semantic_mask_features(semantic, boxes)
        return _average_down(x, self.box_pooler.output_size)

    def forward_box_candidates(self, features, proposals):
        """At test, every proposal's boxes regressed by the last stage and its scores averaged over the
        stages: per image, ``(boxes Ri x 4k, scores Ri x (K + 1))``, the detections before the score
        threshold and NMS. mmdetection 2's ``aug_test`` averages these over test-time augmentations
        (:class:`cascades.modeling.test_time_augmentation.CascadeWithPerRoITTA`)."""
        assert not self.training
        context, _ = self._image_context(features)
        candidates, _ = self._run_cascade(features, proposals, context, detections=self._candidates)
        return candidates

    def _forward_box(self, features, proposals, targets=None, detections=None):
        """detectron2's :meth:`CascadeROIHeads._forward_box` (stage loop, stage losses, the last stage's
        boxes at test), with its final inference ``detections`` (by default :meth:`_detections`)."""
        forward_box = with_globals(CascadeROIHeads._forward_box, fast_rcnn_inference=detections or self._detections)
        return forward_box(self, features, proposals, targets)

    def _detections(self, boxes, scores, image_sizes, score_thresh, nms_thresh, topk_per_image):
        """:func:`fast_rcnn_inference` (the top-k NMS) on :meth:`_stage_scores`."""
        return fast_rcnn_inference(boxes, self._stage_scores(scores), image_sizes, score_thresh, nms_thresh,
                                   topk_per_image)

    def _candidates(self, boxes, scores, image_sizes, *thresholds):
        """In place of :meth:`_detections`: every box with its :meth:`_stage_scores`, per image."""
        return list(zip(boxes, self._stage_scores(scores))), None

    def _stage_scores(self, scores):
        """The scores averaged over the stages: with ``score_averaging="logits"``, one softmax of the
        mean of the stages' logits, in place of detectron2's mean of their probabilities (``scores``)."""
        if self.score_averaging == "logits":
            mean_logits = sum(stage.predictions[0] for stage in self._stages) / len(self._stages)
            # The last predictor's activation (softmax, or sigmoid with use_sigmoid_ce), per image.
            scores = self.box_predictor[-1].predict_probs((mean_logits, None), self._stages[-1].proposals)
        return scores

    def _run_cascade(self, features, proposals, context, targets=None, detections=None):
        """detectron2's :meth:`CascadeROIHeads._forward_box` (stage losses in training, ``detections`` at
        test) with ``context`` fused into every stage's box features (:meth:`_run_stage`).

        Returns:
            its output, and one :class:`CascadeStage` per box stage for the mask branch.
        """
        self._context, self._stages = context, []
        try:
            return self._forward_box(features, proposals, targets, detections), self._stages
        finally:
            del self._context, self._stages

    def _run_stage(self, features, proposals, stage):
        """detectron2's stage with the image context added to the pooled features and without its
        gradient scaling (the stage losses are weighted instead); records the stage."""
        box_features = self._box_head_features(
            features, [x.proposal_boxes for x in proposals], stage, self._context
        )
        predictions = self.box_predictor[stage](box_features)
        self._stages.append(CascadeStage(predictions, proposals, box_features))
        return predictions

    def _weight_stage_losses(self, losses: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """alpha_t times the losses of stage t, which detectron2 names ``<loss>_stage<t>``."""
        return {
            name: value * self.stage_loss_weights[int(name.rsplit("_stage", 1)[1])]
            for name, value in losses.items()
        }

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals, targets):
        """detectron2's; with ``add_gt_every_stage`` each sampled proposal also says (``from_gt``)
        whether it is one of the GT boxes that detectron2 appends (``proposal_append_gt``): the boxes
        regressed from those are left out of the next stage (:meth:`_create_proposals_from_boxes`)."""
        if not self.add_gt_every_stage:
            return super().label_and_sample_proposals(proposals, targets)
        proposals = [_flagged(p, False, p.proposal_boxes.device) for p in proposals]
        # detectron2 makes each appended GT proposal from all of its target's fields: the flag too.
        targets = [_flagged(t, True, t.gt_boxes.device) for t in targets]
        return super().label_and_sample_proposals(proposals, targets)

    def _create_proposals_from_boxes(self, boxes, image_sizes, sources=None):
        """detectron2's (the boxes clipped; in training, the empty ones left out).

        Args:
            sources: the proposals that ``boxes`` were regressed from; by default those of the last
                stage run (detectron2's ``_forward_box`` calls this with that stage's boxes). In
                training with ``add_gt_every_stage``, the boxes regressed from GT boxes are left out:
                the next labelling adds the GT boxes themselves.
        """
        if self.training and self.add_gt_every_stage:
            sources = self._stages[-1].proposals if sources is None else sources
            boxes = [b[~p.from_gt] for b, p in zip(boxes, sources)]
        return super()._create_proposals_from_boxes(boxes, image_sizes)

    @torch.no_grad()
    def _match_and_label_boxes(self, proposals, stage, targets):
        """:meth:`CascadeROIHeads._match_and_label_boxes`, after adding the GT boxes when
        ``add_gt_every_stage`` and subsampling the boxes like the first stage when
        ``sample_every_stage``, and carrying the matched GT's other ``gt_*`` fields (the masks: the
        mask branch trains on later stages' boxes)."""
        if self.add_gt_every_stage:
            proposals = [_with_gt_boxes(p, t) for p, t in zip(proposals, targets)]
        proposals = list(proposals)
        matched_gt = []
        for i, (proposals_per_image, targets_per_image) in enumerate(zip(proposals, targets)):
            iou = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
            matched_idxs, labels = self.proposal_matchers[stage](iou)
            if self.sample_every_stage:
                sampled, _ = self._sample_proposals(matched_idxs, labels, targets_per_image.gt_classes)
                proposals[i], matched_idxs = proposals_per_image[sampled], matched_idxs[sampled]
            matched_gt.append(matched_idxs)
        # detectron2 matches again (it does not return the matches) and logs the stage's samples.
        proposals = super()._match_and_label_boxes(proposals, stage, targets)
        for proposals_per_image, targets_per_image, idxs in zip(proposals, targets, matched_gt):
            if len(targets_per_image) == 0:
                continue
            for name, value in targets_per_image.get_fields().items():
                if name.startswith("gt_") and not proposals_per_image.has(name):
                    proposals_per_image.set(name, value[idxs])
        return proposals

    @staticmethod
    def _average_mask_probs(logits_per_head: List[torch.Tensor], instances: List[Instances]):
        """Mask ensemble: each instance's mask = mean over heads of its class's probability."""
        summed = None
        for logits in logits_per_head:
            mask_rcnn_inference(logits, instances)
            probs = [x.pred_masks for x in instances]
            summed = probs if summed is None else [a + b for a, b in zip(summed, probs)]
        for x, total in zip(instances, summed):
            x.pred_masks = total / len(logits_per_head)
        return instances

    def _mask_losses(self, features, stages, context, targets) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def _mask_inference(self, features, instances, context) -> List[Instances]:
        raise NotImplementedError


def _average_down(x: torch.Tensor, size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size)``: the released code's resizing of the 14 x 14 semantic RoI
    features to the box branch's 7 x 7. When autograd records it (training) and ``size`` divides the
    input, a mean over blocks instead: the same values up to the summation order (1e-7), without
    autograd keeping the input (adaptive_avg_pool2d keeps it for its backward: 205 MB per stage for 512
    RoIs of 2 images at 800 x 800). Inference runs adaptive_avg_pool2d itself, as mmdetection does."""
    h, w = (size, size) if isinstance(size, int) else size
    if not (torch.is_grad_enabled() and x.requires_grad) or x.shape[-2] % h or x.shape[-1] % w:
        return F.adaptive_avg_pool2d(x, (h, w))
    return x.unflatten(-1, (w, -1)).unflatten(-3, (h, -1)).mean(dim=(-3, -1))


def _flagged(instances: Instances, from_gt: bool, device) -> Instances:
    """A shallow copy of ``instances`` with a field ``from_gt`` equal to ``from_gt``."""
    out = Instances(instances.image_size, **instances.get_fields())
    out.from_gt = torch.full((len(instances),), from_gt, dtype=torch.bool, device=device)
    return out


def _with_gt_boxes(proposals: Instances, targets: Instances) -> Instances:
    """The ``proposal_boxes`` of ``proposals`` followed by the GT boxes, flagged in ``from_gt``."""
    boxes = Instances(proposals.image_size, proposal_boxes=proposals.proposal_boxes)
    gt = Instances(proposals.image_size, proposal_boxes=targets.gt_boxes)
    device = proposals.proposal_boxes.device
    return Instances.cat([_flagged(boxes, False, device), _flagged(gt, True, device)])
