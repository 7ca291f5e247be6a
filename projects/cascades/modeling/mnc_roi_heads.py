"""MNC's ROI heads: stages 2-5 of the multi-task network cascade (Dai, He, Sun, CVPR 2016).

Stage numbering. The paper counts the RPN as stage 1, then stage 2 (class-agnostic masks), stage 3
(categories and class-wise box regression), and, in the 5-stage cascade, stages 4 and 5: stages 2 and
3 again, with the same modules (hence the same Parameters), on stage 3's regressed boxes. Loss names
follow detectron2's cascade and count the (mask, category) *pairs* from 0: ``*_stage0`` are the losses
of paper stages 2 and 3, ``*_stage1`` those of paper stages 4 and 5:

- ``loss_mask_stage{k}``: per-pixel sigmoid cross-entropy of the mask (box IoU >= 0.5 positives);
- ``loss_cls_stage{k}``: the mask-level (N+1)-way classifier, positives by box AND mask IoU >= 0.5
  (:func:`mask_level_labels`); the only classifier used at inference;
- ``loss_cls_box_level_stage{k}``: the box-level classifier (positives by box IoU), training only;
- ``loss_box_reg_stage{k}``: class-wise box regression of the box-level positives.

End-to-end training (the default) keeps the graph through the box coordinates: the RoI warp passes
gradients into the RPN's proposals (with :class:`cascades.modeling.mnc.MNCRPN`) and into the stage-3
regressed boxes that stages 4 and 5 pool from, and the masking layer passes stage 3's gradients into
stage 2's masks. ``end_to_end=False`` detaches the boxes (Table 1's ablation); masks still pass.
"""
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat, cross_entropy, nonzero_tuple
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, FastRCNNOutputLayers, ROIHeads
from detectron2.modeling.roi_heads.cascade_rcnn import _ScaleGradient  # identity forward, grad x scale
from detectron2.modeling.roi_heads.fast_rcnn import _log_classification_stats
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..layers import RoIWarpPooler
from .mnc_box_gradient import boxes_inside_image, clip_delta_gradient, delta_gradient_threshold
from .mnc_heads import MNCBoxHead, MNCMaskHead
from .mnc_mask_voting import nms_and_mask_voting
from .shared_gt_masks import share_gt_masks

__all__ = ["MNCROIHeads", "check_box_gradient_option", "mask_level_labels", "sample_released"]

SAMPLINGS = ("detectron2", "released")
MASKING_GRADS = ("all", "mask_level_positives")
VOTE_MODES = ("paper", "released")
# The released code's background bands (mnc_config.py: BG_THRESH_LO/HI, BG_FRACTION), keyed by the
# label that the three-band matcher Matcher([0.1, 0.5], [-1, 0, 1]) gives them.
RELEASED_BACKGROUND_FRACTIONS = {0: 0.85, -1: 0.15}  # IoU [0.1, 0.5): 85%, IoU [0, 0.1): 15%


def check_box_gradient_option(owner: str, name: str, value, allow_none: bool = False):
    """One line naming the argument when a box-gradient clip or scale is not a finite number >= 0."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        expected = "a finite number >= 0" + (" or None" if allow_none else "")
        raise ValueError(f"{owner}: {name} must be {expected}, got {value!r}")


def _check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"MNCROIHeads: {name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _mask_areas(gt_masks) -> torch.Tensor:
    """Pixel areas of PolygonMasks or BitMasks."""
    return gt_masks.area().float() if hasattr(gt_masks, "area") else gt_masks.tensor.flatten(1).sum(1).float()


def mask_level_labels(
    box_labels: torch.Tensor,
    mask_probs: torch.Tensor,
    mask_targets: torch.Tensor,
    boxes: torch.Tensor,
    gt_areas: torch.Tensor,
    num_classes: int,
    iou_thresh: float = 0.5,
    threshold: float = 0.4,
) -> torch.Tensor:
    """
    Labels of MNC's mask-level classifier (Sec. 6, "Positive/negative samples" (iii)): the box-level
    labels, except that a box-level positive whose predicted mask overlaps its GT instance's mask by
    mask IoU < ``iou_thresh`` becomes background (``num_classes``).

    Args:
        box_labels: R box-level labels in [0, num_classes] (num_classes: background).
        mask_probs, mask_targets: F x m x m predicted masks (probabilities) and the matched GT masks
            cropped to the boxes (bool), of the F box-level positives in the order of ``box_labels``.
        boxes: F x 4 boxes the masks live in. gt_areas: F areas of the matched GT masks, whole.
        threshold: the predicted mask is the pixels >= threshold (0.4, the released code's
            ``BINARIZE_THRESH``, which its mask layer also uses here).

    The IoU is with the whole GT mask (its part outside the box counts in the union): each of the m x m
    cells covers 1/m^2 of the box.
    """
    fg = nonzero_tuple((box_labels >= 0) & (box_labels < num_classes))[0]
    m = mask_probs.shape[-1]
    cell = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (m * m)
    pred = mask_probs >= threshold
    inter = (pred & mask_targets).flatten(1).sum(1) * cell
    union = pred.flatten(1).sum(1) * cell + gt_areas - inter
    labels = box_labels.clone()
    labels[fg[inter < iou_thresh * union]] = num_classes
    return labels


def sample_released(matched_labels: torch.Tensor, batch_size: int, positive_fraction: float) -> torch.Tensor:
    """
    The released code's RoI sampler (``lib/pylayer/proposal_target_layer.py``, ``mnc_config.py``):
    round(batch_size * positive_fraction) foreground RoIs at most (matcher label 1), then, of the
    remaining slots, 85% from the background band IoU [0.1, 0.5) (label 0) and 15% from IoU [0, 0.1)
    (label -1), each rounded and at most what the band holds: the batch is not filled up from other
    bands. Returns the sampled indices, foreground first.
    """

    def pick(label: int, n: int) -> torch.Tensor:
        idx = nonzero_tuple(matched_labels == label)[0]
        return idx[torch.randperm(idx.numel(), device=idx.device)[:n]]

    fg = pick(1, round(batch_size * positive_fraction))
    rest = batch_size - fg.numel()
    return torch.cat([fg] + [pick(label, round(rest * f)) for label, f in RELEASED_BACKGROUND_FRACTIONS.items()])


@ROI_HEADS_REGISTRY.register()
class MNCROIHeads(ROIHeads):
    """Stages 2-5 of MNC; see the module docstring for the stages, losses and gradient paths.

    Training samples: the first pair's RoIs are detectron2's :meth:`ROIHeads.label_and_sample_proposals`
    (GT boxes appended, matched, subsampled), run with the graph of the box coordinates kept; the second
    pair (stages 4 and 5) labels every stage-3 box, without subsampling.

    At inference, every (mask, category) pair run contributes its instances (300 + 300 for the
    5-stage cascade): for each class whose score passes ``box_predictor.test_score_thresh``, the
    class-specific regressed box, the score, and the stage-2/4 mask in the box it was predicted in.
    They go through per-class NMS (``box_predictor.test_nms_thresh``, 0.3 in the paper) and mask
    voting; at most ``box_predictor.test_topk_per_image`` are kept. The voted soft masks are returned
    as ``Instances.pred_voted_masks`` (:class:`cascades.modeling.mnc_mask_voting.VotedMasks`: K x r x r
    masks, each in its own frame box); :class:`MNC` pastes and binarizes them at the output resolution.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        box_in_features: Optional[List[str]] = None,
        pooler: RoIWarpPooler,
        mask_head: MNCMaskHead,
        box_head: MNCBoxHead,
        box_predictor: FastRCNNOutputLayers,
        box_feature_pool: int = 2,
        num_stages: int = 5,
        test_num_stages: int = 5,
        end_to_end: bool = True,
        box_grad_scale: float = 1.0,
        box_grad_clip: Optional[float] = None,
        sampling: str = "detectron2",
        mask_loss_weight: float = 1.0,
        mask_iou_thresh: float = 0.5,
        mask_threshold: float = 0.4,
        masking_grad: str = "all",
        vote_mode: str = "paper",
        vote_iou_thresh: float = 0.5,
        vote_resolution: Optional[int] = None,
        **kwargs,
    ):
        """
        Args:
            in_features: backbone features to pool from (one level for C4/VGG, several for FPN).
            box_in_features: the features stage 3 (and 5) pools from, when not the mask stage's
                (Table 1's separate networks; see :mod:`cascades.modeling.mnc_separate`): then each
                stage warps its own features; by default stage 3 reuses stage 2's warp.
            pooler: a RoIWarpPooler whose output feeds the mask head (28 x 28 warp, 2 x 2 max -> 14 x 14).
            mask_head: stage 2 (and 4).
            box_head: stage 3's (and 5's) mask and box pathways.
            box_predictor: stage 3's mask-level (N+1)-way classifier and class-wise box regressor; its
                test_* fields set the inference thresholds, its smooth_l1_beta the box loss (1: Fast
                R-CNN's smooth L1 with sigma 1, as the released code; 0: L1), its loss_weight the
                weights of ``loss_cls`` (the mask-level classifier) and ``loss_box_reg``.
            box_feature_pool: k x k max pooling of the mask head's RoI feature for the box head (14 -> 7,
                i.e. the paper's 28 x 28 warp max-pooled to 7 x 7, with one warp for both heads).
            num_stages: 3 or 5, the cascade trained. test_num_stages: 3 or 5, the cascade at inference
                (the paper tests 3-stage-trained models with 5 stages, Table 1 (c)).
            end_to_end: back-propagate through the box coordinates; False detaches them (ablation).
            box_grad_scale: factor on the gradient that the RoI warp passes into the box coordinates
                (1: the paper's Eq. 9). The gradient of a box coordinate sums over every sampled
                feature of its RoI; from random initialization at lr 0.01 it outweighs the RPN's own
                regression loss and drags the proposals off the objects, which a smaller factor avoids.
            box_grad_clip: the released code's clip of the gradient that stages 4 and 5 pass into stage
                3's regression deltas through the boxes (1/512 in its train prototxt; None: no clip,
                the paper): per delta, after the width/height scaling, and 0 for a box that the image
                border cut; see :mod:`cascades.modeling.mnc_box_gradient` for how the threshold carries
                over from Caffe's per-image loss normalization. :class:`MNCRPN` has the same option
                for the proposals.
            sampling: "detectron2" (subsample_labels: at most ``positive_fraction`` foreground, the rest
                background below the matcher's IoU; stages 4/5 on stage 3's boxes only) or "released"
                (:func:`sample_released`: ``positive_fraction`` 0.3, background in IoU bands 85% [0.1,
                0.5) / 15% [0, 0.1), which needs ``proposal_matcher=Matcher([0.1, 0.5], [-1, 0, 1])``,
                and GT boxes appended to stages 4/5's RoIs).
            mask_loss_weight: weight of the mask losses (1 in the paper, 2 in the released code).
            mask_iou_thresh: mask IoU at or above which a box-level positive is a mask-level positive.
            mask_threshold: binarizes predicted masks where the heads need binary ones: the mask IoU of
                the mask-level labels and, with vote_mode "released", each voter's mask (0.4 in the
                released code).
            masking_grad: which RoIs' masks the masking layer (Eq. 3) passes stage 3's gradient into:
                "all" (the paper's Eq. 3), or "mask_level_positives" (the released code's mask layer).
            vote_mode: "paper": per-class NMS on the class-specific regressed boxes, voting averages the
                voters' soft masks; "released": NMS (and the voters' IoU) on the boxes the masks were
                predicted in, each voter's mask binarized at ``mask_threshold`` before averaging, and
                :class:`MNC` replaces the output box by the tight box of the voted mask.
            vote_iou_thresh: box IoU with a kept instance at or above which an instance votes.
            vote_resolution: side of the voted masks (default: the mask head's m).
            kwargs: ROIHeads' arguments (num_classes, batch_size_per_image, positive_fraction,
                proposal_matcher, proposal_append_gt).
        """
        super().__init__(**kwargs)
        for name, value in (("num_stages", num_stages), ("test_num_stages", test_num_stages)):
            _check_choice(name, value, (3, 5))
        _check_choice("sampling", sampling, SAMPLINGS)
        _check_choice("vote_mode", vote_mode, VOTE_MODES)
        _check_choice("masking_grad", masking_grad, MASKING_GRADS)
        check_box_gradient_option("MNCROIHeads", "box_grad_scale", box_grad_scale)
        check_box_gradient_option("MNCROIHeads", "box_grad_clip", box_grad_clip, allow_none=True)
        if not 0.0 <= mask_threshold <= 1.0:
            raise ValueError(f"MNCROIHeads: mask_threshold must be in [0, 1], got {mask_threshold!r}")
        if sampling == "released" and list(self.proposal_matcher.labels) != [-1, 0, 1]:
            raise ValueError(
                "MNCROIHeads: sampling='released' needs proposal_matcher=Matcher([0.1, 0.5], [-1, 0, 1]) (its "
                f"background bands); got thresholds {self.proposal_matcher.thresholds[1:-1]}, labels "
                f"{self.proposal_matcher.labels}"
            )
        if box_predictor.num_classes != self.num_classes:
            raise ValueError(
                f"MNCROIHeads: box_predictor.num_classes ({box_predictor.num_classes}) must equal "
                f"num_classes ({self.num_classes})"
            )
        self.in_features = list(in_features)
        self.box_in_features = list(box_in_features) if box_in_features else None
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
        self.box_grad_scale = box_grad_scale
        self.box_grad_clip = box_grad_clip
        self.sampling = sampling
        self.mask_loss_weight = mask_loss_weight
        self.mask_iou_thresh = mask_iou_thresh
        self.mask_threshold = mask_threshold
        self.masking_grad = masking_grad
        self.vote_mode = vote_mode
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
        if mnc.SAMPLING == "released":
            ret["proposal_matcher"] = Matcher([0.1, 0.5], [-1, 0, 1], allow_low_quality_matches=False)
        ret.update(
            in_features=in_features,
            box_in_features=mnc.BOX_IN_FEATURES or None,
            pooler=pooler,
            mask_head=MNCMaskHead(cfg, roi_shape),
            box_head=box_head,
            box_predictor=FastRCNNOutputLayers(cfg, box_head.output_shape),
            box_feature_pool=mnc.BOX_FEATURE_POOL,
            num_stages=mnc.NUM_STAGES,
            test_num_stages=mnc.TEST_NUM_STAGES,
            end_to_end=mnc.END_TO_END,
            box_grad_scale=mnc.BOX_GRAD_SCALE,
            box_grad_clip=mnc.BOX_GRAD_CLIP,
            sampling=mnc.SAMPLING,
            mask_loss_weight=mnc.MASK_LOSS_WEIGHT,
            mask_iou_thresh=mnc.MASK_IOU_THRESH,
            mask_threshold=mnc.MASK_THRESHOLD,
            masking_grad=mnc.MASKING_GRAD,
            vote_mode=mnc.VOTE_MODE,
            vote_iou_thresh=mnc.VOTE_IOU_THRESH,
        )
        return ret

    def forward(self, images, features, proposals, targets=None):
        if self.training and targets is None:
            raise ValueError("MNCROIHeads: targets (list[Instances]) are required in training")
        if self.training:
            # Both pairs' samples index the GT masks instead of copying them.
            return proposals, self._forward_train(features, proposals, share_gt_masks(targets))
        return self._forward_test(features, proposals), {}

    # ---------------------------------------------------------------------------------------------
    # One (mask, category) pair: paper stages 2 and 3, or 4 and 5.
    def _masks(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Stage 2 (4): the RoIs' boxes, their warped features and their mask logits."""
        boxes = [p.proposal_boxes for p in proposals]
        if self.training and self.end_to_end and self.box_grad_scale != 1.0:
            boxes = [Boxes(_ScaleGradient.apply(b.tensor, self.box_grad_scale)) for b in boxes]
        x = self.pooler([features[f] for f in self.in_features], boxes)
        return boxes, x, self.mask_head(x)

    def _categories(self, features: Dict[str, torch.Tensor], boxes: List[Boxes], x: torch.Tensor, masks: torch.Tensor):
        """Stage 3 (5) on the mask stage's warped features ``x`` (or its own, with ``box_in_features``) and
        the soft masks: box features, class scores and class-wise deltas."""
        if self.box_in_features:
            x = self.pooler([features[f] for f in self.box_in_features], boxes)
        box_x = F.max_pool2d(x, self.box_feature_pool) if self.box_feature_pool > 1 else x
        # The masking layer (Eq. 3): the mask, averaged down to the RoI resolution, multiplies the feature.
        masks = F.adaptive_avg_pool2d(masks[:, None], box_x.shape[-2:])[:, 0]
        box_features = self.box_head(box_x, masks)
        scores, deltas = self.box_predictor(box_features)
        return box_features, scores, deltas

    def _run_pair(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        """Both stages of a pair: mask logits, box features, class scores, class-wise deltas."""
        boxes, x, mask_logits = self._masks(features, proposals)
        return (mask_logits, *self._categories(features, boxes, x, mask_logits.sigmoid()))

    def _decode(self, boxes: torch.Tensor, deltas: torch.Tensor, sizes) -> torch.Tensor:
        """R x k x 4 boxes: ``boxes`` (R x 4, all images' RoIs concatenated) moved by ``deltas`` (R x 4k),
        clipped to their images; ``sizes``: (number of RoIs, image size) per image."""
        num, k = len(boxes), deltas.shape[1] // 4
        out = self.box_predictor.box2box_transform.apply_deltas(deltas, boxes)
        clipped = []
        for b, (_, image_size) in zip(out.split([n for n, _ in sizes]), sizes):
            b = Boxes(b.reshape(-1, 4))
            b.clip(image_size)
            clipped.append(b.tensor)
        return cat(clipped, dim=0).view(num, k, 4)

    def _released_bridge_gradient(self, boxes: torch.Tensor, deltas: torch.Tensor, sizes) -> torch.Tensor:
        """``deltas`` (R x 4, the chosen class's) with the released stage bridge's backward: clipped at
        ``box_grad_clip``, 0 where the regressed box leaves its image (see mnc_box_gradient)."""
        transform = self.box_predictor.box2box_transform
        with torch.no_grad():
            moved = transform.apply_deltas(deltas, boxes)
            keep = cat([boxes_inside_image(b, size) for b, (_, size) in zip(moved.split([n for n, _ in sizes]), sizes)])
        threshold = delta_gradient_threshold(self.box_grad_clip, len(sizes), transform.weights, deltas.device)
        return clip_delta_gradient(deltas, keep, threshold)

    def _next_proposals(self, proposals: List[Instances], scores, deltas) -> List[Instances]:
        """Stage 3's boxes, regressed with the highest-scoring category's regressor, as new proposals
        (their objectness_logits: that category's score)."""
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        top_scores, top = scores[:, : self.num_classes].max(dim=1)
        chosen = deltas.view(len(boxes), self.num_classes, 4)[torch.arange(len(boxes), device=deltas.device), top]
        sizes = [(len(p), p.image_size) for p in proposals]
        if self.training and self.box_grad_clip is not None:
            chosen = self._released_bridge_gradient(boxes, chosen, sizes)
        counts = [len(p) for p in proposals]
        new = self._decode(boxes, chosen, sizes)[:, 0].split(counts)
        return [
            Instances(p.image_size, proposal_boxes=Boxes(b), objectness_logits=s)
            for p, b, s in zip(proposals, new, top_scores.split(counts))
        ]

    # ---------------------------------------------------------------------------------------------
    # Training
    def _training_boxes(self, proposals: List[Instances]) -> List[Instances]:
        """The proposals, with their box coordinates detached unless end to end."""
        if self.end_to_end:
            return proposals
        return [
            Instances(p.image_size, proposal_boxes=Boxes(p.proposal_boxes.tensor.detach()), objectness_logits=p.objectness_logits)
            for p in proposals
        ]

    def _sample_proposals(self, matched_idxs, matched_labels, gt_classes):
        """detectron2's sampler, or with ``sampling="released"``, :func:`sample_released` (where every
        RoI that is not foreground is background, whichever band)."""
        if self.sampling != "released":
            return super()._sample_proposals(matched_idxs, matched_labels, gt_classes)
        labels = self._box_level_labels(matched_idxs, matched_labels, gt_classes)
        idx = sample_released(matched_labels, self.batch_size_per_image, self.positive_fraction)
        return idx, labels[idx]

    def _box_level_labels(self, matched_idxs, matched_labels, gt_classes):
        """The matched GT's class where the matcher says foreground (label 1), else background."""
        if gt_classes.numel() == 0:
            return torch.full_like(matched_idxs, self.num_classes)
        return torch.where(matched_labels == 1, gt_classes[matched_idxs], self.num_classes)

    def _label_and_sample(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """The first pair's RoIs: detectron2's ``label_and_sample_proposals`` without its ``no_grad``,
        so that the sampled boxes keep their graph when end to end."""
        return ROIHeads.label_and_sample_proposals.__wrapped__(self, self._training_boxes(proposals), targets)

    def _label_cascaded(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Stages 4 and 5's RoIs: every stage-3 box (and with ``sampling="released"``, the GT boxes
        too, as the released stage bridge appends them), matched and labelled, not subsampled; the
        matched GT's ``gt_*`` fields copied as detectron2's sampler does."""
        proposals = self._training_boxes(proposals)
        if self.sampling == "released":
            proposals = add_ground_truth_to_proposals(targets, proposals)
        for p, t in zip(proposals, targets):
            matched_idxs, matched_labels = self.proposal_matcher(pairwise_iou(t.gt_boxes, Boxes(p.proposal_boxes.tensor.detach())))
            p.gt_classes = self._box_level_labels(matched_idxs, matched_labels, t.gt_classes)
            if len(t) > 0:
                for name, value in t.get_fields().items():
                    if name.startswith("gt_") and not p.has(name):
                        p.set(name, value[matched_idxs])
        return proposals

    def _mask_targets(self, proposals: List[Instances], m: int):
        """For the foreground rows (in order): GT masks cropped to the boxes and resized to m x m
        (detectron2's crop_and_resize, as its mask R-CNN loss), and the GT masks' whole areas."""
        crops, areas = [], []
        for p in proposals:
            fg = (p.gt_classes >= 0) & (p.gt_classes < self.num_classes)
            if not fg.any():
                continue
            gt_masks = p.gt_masks[fg]
            crops.append(gt_masks.crop_and_resize(p.proposal_boxes.tensor[fg].detach(), m))
            areas.append(_mask_areas(gt_masks).to(crops[-1].device))
        if not crops:
            device = proposals[0].gt_classes.device if proposals else torch.device("cpu")
            return torch.zeros((0, m, m), dtype=torch.bool, device=device), torch.zeros(0, device=device)
        return cat(crops, dim=0), cat(areas, dim=0)

    def _mask_loss(self, fg_logits: torch.Tensor, mask_targets: torch.Tensor) -> torch.Tensor:
        """Mean per-pixel sigmoid cross-entropy over the box-level positives' masks (0 without any)."""
        if fg_logits.numel() == 0:
            return fg_logits.sum() * 0
        return F.binary_cross_entropy_with_logits(fg_logits, mask_targets.to(fg_logits.dtype))

    def _mask_level_targets(self, proposals: List[Instances], mask_logits: torch.Tensor):
        """The box-level positives' rows, their mask targets, and every RoI's mask-level label."""
        box_labels = cat([p.gt_classes for p in proposals], dim=0)
        fg = nonzero_tuple((box_labels >= 0) & (box_labels < self.num_classes))[0]
        mask_targets, gt_areas = self._mask_targets(proposals, self.mask_head.mask_size)
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0).detach()
        with torch.no_grad():
            labels = mask_level_labels(
                box_labels, mask_logits[fg].sigmoid(), mask_targets, boxes[fg], gt_areas, self.num_classes,
                self.mask_iou_thresh, self.mask_threshold,
            )
        return fg, mask_targets, labels

    def _pair_losses(self, proposals, mask_logits, mask_level, box_features, scores, deltas, k: int):
        """The four losses of pair ``k`` (see the module docstring), the mask-level classifier's
        statistics logged under ``stage{k}/``. ``mask_level``: what :meth:`_mask_level_targets` returns."""
        fg, mask_targets, labels = mask_level
        box_labels = cat([p.gt_classes for p in proposals], dim=0)
        boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0).detach()
        gt_boxes = cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0)
        with get_event_storage().name_scope(f"stage{k}"):
            _log_classification_stats(scores, labels)
        weight = self.box_predictor.loss_weight
        return {
            f"loss_mask_stage{k}": self._mask_loss(mask_logits[fg], mask_targets) * self.mask_loss_weight,
            f"loss_cls_stage{k}": cross_entropy(scores, labels) * weight.get("loss_cls", 1.0),
            f"loss_cls_box_level_stage{k}": cross_entropy(self.box_level_classifier(box_features), box_labels),
            f"loss_box_reg_stage{k}": self.box_predictor.box_reg_loss(boxes, gt_boxes, deltas, box_labels)
            * weight.get("loss_box_reg", 1.0),
        }

    def _forward_train(self, features, proposals, targets):
        proposals = self._label_and_sample(proposals, targets)
        losses = {}
        for k in range(self.num_stages // 2):
            if k > 0:
                proposals = self._label_cascaded(self._next_proposals(proposals, scores, deltas), targets)
            boxes, x, mask_logits = self._masks(features, proposals)
            mask_level = self._mask_level_targets(proposals, mask_logits)
            masks = mask_logits.sigmoid()
            if self.masking_grad == "mask_level_positives":
                labels = mask_level[2]
                positive = (labels >= 0) & (labels < self.num_classes)
                masks = torch.where(positive[:, None, None], masks, masks.detach())
            box_features, scores, deltas = self._categories(features, boxes, x, masks)
            losses.update(self._pair_losses(proposals, mask_logits, mask_level, box_features, scores, deltas, k))
        return losses

    # ---------------------------------------------------------------------------------------------
    # Inference
    def _forward_test(self, features, proposals: List[Instances]) -> List[Instances]:
        return [self._instances(*candidates) for candidates in self.forward_candidates(features, proposals)]

    def forward_candidates(self, features, proposals: List[Instances]) -> List[tuple]:
        """Per image, the candidates of every test pair before NMS and mask voting: ``(image_size, class
        boxes R x K x 4, probabilities R x K, soft masks R x M x M, mask boxes R x 4)``, R rows over the
        pairs (test-time augmentation merges them over the augmentations before :meth:`_instances`)."""
        sizes = [(len(p), p.image_size) for p in proposals]
        per_pair = []
        for k in range(self.test_num_stages // 2):
            if k > 0:
                proposals = self._next_proposals(proposals, scores, deltas)
            mask_logits, _, scores, deltas = self._run_pair(features, proposals)
            boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            class_boxes = self._decode(boxes, deltas, sizes)
            probs = F.softmax(scores, dim=1)[:, : self.num_classes]
            per_pair.append([t.split([n for n, _ in sizes]) for t in (class_boxes, probs, mask_logits.sigmoid(), boxes)])
        return [(image_size, *(cat([pair[j][i] for pair in per_pair], dim=0) for j in range(4)))
                for i, (_, image_size) in enumerate(sizes)]

    def _instances(self, image_size, class_boxes, probs, masks, mask_boxes) -> Instances:
        """One image's detections from its candidates (R rows: K class boxes, K scores, one mask)."""
        predictor = self.box_predictor
        rows, classes = torch.nonzero(probs > predictor.test_score_thresh, as_tuple=True)
        boxes = mask_boxes[rows] if self.vote_mode == "released" else class_boxes[rows, classes]
        scores = probs[rows, classes]
        keep, voted = nms_and_mask_voting(
            boxes, scores, classes, rows, masks, mask_boxes,
            nms_thresh=predictor.test_nms_thresh,
            vote_iou_thresh=self.vote_iou_thresh,
            topk=predictor.test_topk_per_image,
            resolution=self.vote_resolution,
            voter_threshold=self.mask_threshold if self.vote_mode == "released" else None,
        )
        return Instances(
            image_size, pred_boxes=Boxes(boxes[keep]), scores=scores[keep], pred_classes=classes[keep], pred_voted_masks=voted
        )
