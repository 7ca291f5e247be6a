"""MNC's ROI heads: stages 2-5 of the multi-task network cascade (Dai, He, Sun, CVPR 2016).

Stage numbering. The paper counts the RPN as stage 1, then stage 2 (class-agnostic masks), stage 3
(categories and class-wise box regression), and, in the 5-stage cascade, stages 4 and 5: stages 2 and
3 again, with the same modules (hence the same Parameters), on stage 3's regressed boxes. Loss names
follow detectron2's cascade and count the (mask, category) *pairs* from 0: ``*_stage0`` are the losses
of paper stages 2 and 3, ``*_stage1`` those of paper stages 4 and 5:

- ``loss_mask_stage{k}``: per-pixel sigmoid cross-entropy of the mask (box IoU >= 0.5 positives);
- ``loss_cls_stage{k}``: the mask-level (N+1)-way classifier, positives by box AND mask IoU >= 0.5;
  the only classifier used at inference;
- ``loss_cls_box_level_stage{k}``: the box-level classifier (positives by box IoU), training only;
- ``loss_box_reg_stage{k}``: class-wise box regression of the box-level positives.

End-to-end training (the default) keeps the graph through the box coordinates: the RoI warp passes
gradients into the RPN's proposals (with :class:`cascades.modeling.mnc.MNCRPN`) and into the stage-3
regressed boxes that stages 4 and 5 pool from, and the masking layer passes stage 3's gradients into
stage 2's masks. ``end_to_end=False`` detaches the boxes (Table 1's ablation); masks still pass.
"""
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat, cross_entropy
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, FastRCNNOutputLayers, ROIHeads
from detectron2.modeling.roi_heads.cascade_rcnn import _ScaleGradient  # identity forward, grad x scale
from detectron2.modeling.roi_heads.fast_rcnn import _log_classification_stats
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..layers import RoIWarpPooler
from .mnc_heads import MNCBoxHead, MNCMaskHead
from .mnc_mask_voting import nms_and_mask_voting

__all__ = ["MNCROIHeads"]


def _mask_areas(gt_masks) -> torch.Tensor:
    """Pixel areas of PolygonMasks or BitMasks."""
    return gt_masks.area().float() if hasattr(gt_masks, "area") else gt_masks.tensor.flatten(1).sum(1).float()


@ROI_HEADS_REGISTRY.register()
class MNCROIHeads(ROIHeads):
    """Stages 2-5 of MNC; see the module docstring for the stages, losses and gradient paths.

    At inference, every (mask, category) pair run contributes its instances (300 + 300 for the
    5-stage cascade): for each class whose score passes ``box_predictor.test_score_thresh``, the
    class-specific regressed box, the score, and the stage-2/4 mask in the box it was predicted in.
    They go through per-class NMS (``box_predictor.test_nms_thresh``, 0.3 in the paper) and mask
    voting; at most ``box_predictor.test_topk_per_image`` are kept. The voted soft masks are
    returned as ``vote_masks`` (K x r x r) covering ``vote_boxes``; :class:`MNC` pastes and binarizes
    them at the output resolution.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        pooler: RoIWarpPooler,
        mask_head: MNCMaskHead,
        box_head: MNCBoxHead,
        box_predictor: FastRCNNOutputLayers,
        box_feature_pool: int = 2,
        num_stages: int = 5,
        test_num_stages: int = 5,
        end_to_end: bool = True,
        box_grad_scale: float = 1.0,
        mask_loss_weight: float = 1.0,
        mask_iou_thresh: float = 0.5,
        vote_iou_thresh: float = 0.5,
        vote_resolution: Optional[int] = None,
        **kwargs,
    ):
        """
        Args:
            in_features: backbone features to pool from (one level for C4/VGG, several for FPN).
            pooler: a RoIWarpPooler whose output feeds the mask head (28 x 28 warp, 2 x 2 max -> 14 x 14).
            mask_head: stage 2 (and 4).
            box_head: stage 3's (and 5's) mask and box pathways.
            box_predictor: stage 3's mask-level (N+1)-way classifier and class-wise box regressor; its
                test_* fields set the inference thresholds.
            box_feature_pool: k x k max pooling of the mask head's RoI feature for the box head (14 -> 7,
                i.e. the paper's 28 x 28 warp max-pooled to 7 x 7, with one warp for both heads).
            num_stages: 3 or 5, the cascade trained. test_num_stages: 3 or 5, the cascade at inference
                (the paper tests 3-stage-trained models with 5 stages, Table 1 (c)).
            end_to_end: back-propagate through the box coordinates; False detaches them (ablation).
            box_grad_scale: factor on the gradient that the RoI warp passes into the box coordinates
                (1: the paper's Eq. 9). The gradient of a box coordinate sums over every sampled
                feature of its RoI; from random initialization at lr 0.01 it outweighs the RPN's own
                regression loss and drags the proposals off the objects, which a smaller factor avoids.
            mask_loss_weight: weight of the mask losses (1 in the paper, 2 in the released code).
            mask_iou_thresh: mask IoU at or above which a box-level positive is a mask-level positive.
            vote_iou_thresh: box IoU with a kept instance at or above which an instance votes.
            vote_resolution: side of the voted masks (default: the mask head's m).
            kwargs: ROIHeads' arguments (num_classes, batch_size_per_image, positive_fraction,
                proposal_matcher, proposal_append_gt).
        """
        super().__init__(**kwargs)
        for name, value in (("num_stages", num_stages), ("test_num_stages", test_num_stages)):
            if value not in (3, 5):
                raise ValueError(f"MNCROIHeads: {name} must be 3 or 5, got {value!r}")
        if box_predictor.num_classes != self.num_classes:
            raise ValueError(
                f"MNCROIHeads: box_predictor.num_classes ({box_predictor.num_classes}) must equal "
                f"num_classes ({self.num_classes})"
            )
        self.in_features = list(in_features)
        self.pooler = pooler
        self.mask_head = mask_head
        self.box_head = box_head
        self.box_predictor = box_predictor
        # The second, box-level classifier (training only): keeps the category features learning
        # from instances whose mask is still poor.
        self.box_level_classifier = nn.Linear(box_predictor.cls_score.in_features, self.num_classes + 1)
        nn.init.normal_(self.box_level_classifier.weight, std=0.01)
        nn.init.constant_(self.box_level_classifier.bias, 0)
        self.box_feature_pool = box_feature_pool
        self.num_stages = num_stages
        self.test_num_stages = test_num_stages
        self.end_to_end = end_to_end
        if not box_grad_scale >= 0:
            raise ValueError(f"MNCROIHeads: box_grad_scale must be >= 0, got {box_grad_scale!r}")
        self.box_grad_scale = box_grad_scale
        self.mask_loss_weight = mask_loss_weight
        self.mask_iou_thresh = mask_iou_thresh
        self.vote_iou_thresh = vote_iou_thresh
        self.vote_resolution = vote_resolution or mask_head.mask_size

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg)
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        mnc = cfg.MODEL.MNC
        pooler = RoIWarpPooler(
            mnc.WARP_SIZE, [1.0 / input_shape[f].stride for f in in_features], pool_size=mnc.WARP_POOL_SIZE
        )
        size = mnc.WARP_SIZE // mnc.WARP_POOL_SIZE
        roi_shape = ShapeSpec(channels=input_shape[in_features[0]].channels, height=size, width=size)
        box_shape = ShapeSpec(
            channels=roi_shape.channels, height=size // mnc.BOX_FEATURE_POOL, width=size // mnc.BOX_FEATURE_POOL
        )
        box_head = MNCBoxHead(cfg, box_shape)
        ret.update(
            in_features=in_features,
            pooler=pooler,
            mask_head=MNCMaskHead(cfg, roi_shape),
            box_head=box_head,
            box_predictor=FastRCNNOutputLayers(cfg, box_head.output_shape),
            box_feature_pool=mnc.BOX_FEATURE_POOL,
            num_stages=mnc.NUM_STAGES,
            test_num_stages=mnc.TEST_NUM_STAGES,
            end_to_end=mnc.END_TO_END,
            box_grad_scale=mnc.BOX_GRAD_SCALE,
            mask_loss_weight=mnc.MASK_LOSS_WEIGHT,
            mask_iou_thresh=mnc.MASK_IOU_THRESH,
            vote_iou_thresh=mnc.VOTE_IOU_THRESH,
        )
        return ret

    def forward(self, images, features, proposals, targets=None):
        if self.training and targets is None:
            raise ValueError("MNCROIHeads: targets (list[Instances]) are required in training")
        features = [features[f] for f in self.in_features]
        if self.training:
            return proposals, self._forward_train(features, proposals, targets)
        return self._forward_test(features, proposals), {}

    # ---------------------------------------------------------------------------------------------
    # One (mask, category) pair: paper stages 2 and 3, or 4 and 5.
    def _run_pair(self, features, proposals: List[Instances]):
        boxes = [p.proposal_boxes for p in proposals]
        if self.training and self.end_to_end and self.box_grad_scale != 1.0:
            boxes = [Boxes(_ScaleGradient.apply(b.tensor, self.box_grad_scale)) for b in boxes]
        x = self.pooler(features, boxes)
        mask_logits = self.mask_head(x)
        box_x = F.max_pool2d(x, self.box_feature_pool) if self.box_feature_pool > 1 else x
        # The masking layer: the mask, averaged down to the RoI resolution, multiplies the feature.
        masks = F.adaptive_avg_pool2d(mask_logits.sigmoid()[:, None], box_x.shape[-2:])[:, 0]
        box_features = self.box_head(box_x, masks)
        scores, deltas = self.box_predictor(box_features)
        return mask_logits, box_features, scores, deltas

    def _regressed_boxes(self, boxes: torch.Tensor, deltas: torch.Tensor, classes: Optional[torch.Tensor], sizes):
        """Class-wise regressed boxes (R x K x 4), or, with ``classes`` (R), the box of that class
        only (R x 4), clipped to their images. ``boxes``: all images' RoIs concatenated; ``sizes``:
        (number of RoIs, image size) per image."""
        transform = self.box_predictor.box2box_transform
        num = len(boxes)
        deltas = deltas.view(num, self.num_classes, 4)
        if classes is not None:
            deltas = deltas[torch.arange(num, device=deltas.device), classes][:, None]
        k = deltas.shape[1]
        out = transform.apply_deltas(deltas.reshape(num, 4 * k), boxes).view(num, k, 4)
        clipped = []
        for b, (_, image_size) in zip(out.split([n for n, _ in sizes]), sizes):
            b = Boxes(b.reshape(-1, 4))
            b.clip(image_size)
            clipped.append(b.tensor.view(-1, k, 4))
        out = cat(clipped, dim=0)
        return out[:, 0] if classes is not None else out

    def _next_proposals(self, proposals: List[Instances], scores, deltas) -> List[Instances]:
        """Stage 3's boxes, regressed with the highest-scoring category's regressor, as new proposals."""
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        top = scores[:, : self.num_classes].argmax(dim=1)
        sizes = [(len(p), p.image_size) for p in proposals]
        new = self._regressed_boxes(boxes, deltas, top, sizes).split([len(p) for p in proposals])
        out = []
        for p, b in zip(proposals, new):
            q = Instances(p.image_size)
            q.proposal_boxes = Boxes(b)
            out.append(q)
        return out

    # ---------------------------------------------------------------------------------------------
    # Training
    def _label(self, proposals: List[Instances], targets: List[Instances], sample: bool) -> List[Instances]:
        """Matches proposals to GT by box IoU and, if ``sample``, subsamples them (detectron2's
        ``label_and_sample_proposals``, without its ``no_grad``: the box tensors keep their graph
        when end-to-end). Sets ``gt_classes`` (box-level labels, num_classes = background),
        ``gt_boxes`` and ``gt_index`` (the matched GT's index in its image)."""
        if sample and self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        out = []
        for p, t in zip(proposals, targets):
            boxes = p.proposal_boxes.tensor if self.end_to_end else p.proposal_boxes.tensor.detach()
            with torch.no_grad():
                matched_idxs, matched_labels = self.proposal_matcher(
                    pairwise_iou(t.gt_boxes, Boxes(boxes.detach()))
                )
                if len(t) > 0:
                    classes = t.gt_classes[matched_idxs]
                    classes[matched_labels == 0] = self.num_classes
                    classes[matched_labels == -1] = -1
                else:
                    classes = torch.full_like(matched_idxs, self.num_classes)
                if sample:
                    fg, bg = subsample_labels(classes, self.batch_size_per_image, self.positive_fraction, self.num_classes)
                    idx = torch.cat([fg, bg])
                else:
                    idx = torch.arange(len(classes), device=classes.device)
            q = Instances(p.image_size)
            q.proposal_boxes = Boxes(boxes[idx])
            q.gt_classes = classes[idx]
            q.gt_index = matched_idxs[idx]
            # Background rows never read their gt_boxes; without GT they point at the box itself.
            q.gt_boxes = Boxes(t.gt_boxes.tensor[q.gt_index] if len(t) > 0 else boxes[idx].detach())
            out.append(q)
        return out

    def _mask_targets(self, proposals: List[Instances], targets: List[Instances], m: int):
        """For the foreground rows (in order): GT masks cropped to the boxes and resized to m x m
        (detectron2's crop_and_resize), and the GT masks' full areas."""
        crops, areas = [], []
        for p, t in zip(proposals, targets):
            fg = (p.gt_classes >= 0) & (p.gt_classes < self.num_classes)
            if not fg.any():
                continue
            gt_masks = t.gt_masks[p.gt_index[fg]]
            crops.append(gt_masks.crop_and_resize(p.proposal_boxes.tensor[fg].detach(), m))
            areas.append(_mask_areas(gt_masks).to(crops[-1].device))
        if not crops:
            device = proposals[0].gt_classes.device if proposals else torch.device("cpu")
            return torch.zeros((0, m, m), dtype=torch.bool, device=device), torch.zeros(0, device=device)
        return cat(crops, dim=0), cat(areas, dim=0)

    def _pair_losses(self, proposals, targets, mask_logits, box_features, scores, deltas, k: int):
        gt_classes = cat([p.gt_classes for p in proposals], dim=0)
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0).detach()
        gt_boxes = cat([p.gt_boxes.tensor for p in proposals], dim=0)
        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < self.num_classes)).squeeze(1)
        m = self.mask_head.mask_size
        mask_targets, gt_areas = self._mask_targets(proposals, targets, m)

        fg_logits = mask_logits[fg]
        if fg.numel() > 0:
            loss_mask = F.binary_cross_entropy_with_logits(fg_logits, mask_targets.to(fg_logits.dtype))
        else:
            loss_mask = mask_logits.sum() * 0
        with torch.no_grad():
            # Mask IoU with the whole GT mask: the prediction lives in its box, the GT may not.
            cell = (boxes[fg, 2] - boxes[fg, 0]) * (boxes[fg, 3] - boxes[fg, 1]) / (m * m)
            pred = fg_logits > 0
            inter = (pred & mask_targets).flatten(1).sum(1) * cell
            union = pred.flatten(1).sum(1) * cell + gt_areas - inter
            mask_classes = gt_classes.clone()
            mask_classes[fg[inter < self.mask_iou_thresh * union]] = self.num_classes

        with get_event_storage().name_scope(f"stage{k}"):
            _log_classification_stats(scores, mask_classes)
        return {
            f"loss_mask_stage{k}": loss_mask * self.mask_loss_weight,
            f"loss_cls_stage{k}": cross_entropy(scores, mask_classes),
            f"loss_cls_box_level_stage{k}": cross_entropy(self.box_level_classifier(box_features), gt_classes),
            f"loss_box_reg_stage{k}": self.box_predictor.box_reg_loss(boxes, gt_boxes, deltas, gt_classes),
        }

    def _forward_train(self, features, proposals, targets):
        proposals = self._label(proposals, targets, sample=True)
        losses = {}
        for k in range(self.num_stages // 2):
            if k > 0:
                proposals = self._label(self._next_proposals(proposals, scores, deltas), targets, sample=False)
            mask_logits, box_features, scores, deltas = self._run_pair(features, proposals)
            losses.update(self._pair_losses(proposals, targets, mask_logits, box_features, scores, deltas, k))
        return losses

    # ---------------------------------------------------------------------------------------------
    # Inference
    def _forward_test(self, features, proposals: List[Instances]) -> List[Instances]:
        sizes = [(len(p), p.image_size) for p in proposals]
        per_pair = []
        for k in range(self.test_num_stages // 2):
            if k > 0:
                proposals = self._next_proposals(proposals, scores, deltas)
            mask_logits, _, scores, deltas = self._run_pair(features, proposals)
            boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            class_boxes = self._regressed_boxes(boxes, deltas, None, sizes)
            probs = F.softmax(scores, dim=1)[:, : self.num_classes]
            per_pair.append([t.split([n for n, _ in sizes]) for t in (class_boxes, probs, mask_logits.sigmoid(), boxes)])
        results = []
        for i, (_, image_size) in enumerate(sizes):
            class_boxes, probs, masks, mask_boxes = (cat([pair[j][i] for pair in per_pair], dim=0) for j in range(4))
            results.append(self._instances(image_size, class_boxes, probs, masks, mask_boxes))
        return results

    def _instances(self, image_size, class_boxes, probs, masks, mask_boxes) -> Instances:
        """One image's detections from its candidates (R rows: K class boxes, K scores, one mask)."""
        predictor = self.box_predictor
        rows, classes = torch.nonzero(probs > predictor.test_score_thresh, as_tuple=True)
        boxes, scores = class_boxes[rows, classes], probs[rows, classes]
        keep, voted, frames = nms_and_mask_voting(
            boxes, scores, classes, rows, masks, mask_boxes,
            nms_thresh=predictor.test_nms_thresh,
            vote_iou_thresh=self.vote_iou_thresh,
            topk=predictor.test_topk_per_image,
            resolution=self.vote_resolution,
        )
        result = Instances(image_size)
        result.pred_boxes = Boxes(boxes[keep])
        result.scores = scores[keep]
        result.pred_classes = classes[keep]
        result.vote_masks = voted
        result.vote_boxes = Boxes(frames)
        return result
