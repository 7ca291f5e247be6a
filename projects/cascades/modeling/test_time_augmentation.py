"""Test-time augmentation with masks: horizontal flip and several scales, for every model of the project.

Two ways to merge the augmentations (``merge``):

- ``"detectron2"`` (:class:`RCNNWithTTA`): detectron2's ``GeneralizedRCNNWithTTA``. Each augmentation
  detects boxes; their union, mapped back to the original image, goes through the per-class NMS once; the
  masks are then predicted on those boxes under every augmentation (SCNet's feature relay recomputes the
  last stage's box features on them: its heads' ``forward_with_given_boxes``) and their probabilities are
  averaged before binarization. MNC (:class:`MNCWithTTA`): its candidates of every augmentation (boxes,
  scores and the masks in the boxes they were predicted in), mapped back to the original image, go through
  its NMS and mask voting once, as one image's candidates.
- ``"mmdetection2"`` (:class:`CascadeWithPerRoITTA`): the released mmdetection 2 ``aug_test`` of the
  SCNet / HTC / Cascade RoI heads, which gave SCNet's published TTA figures: the proposals of every
  augmentation are merged (NMS); each augmentation runs the box cascade on those same proposals; every
  RoI's boxes and scores are averaged over the augmentations before the per-class NMS; the masks are then
  as above.
"""
from typing import Sequence

import numpy as np
import torch
from fvcore.transforms import HFlipTransform
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from detectron2.config import CfgNode
from detectron2.layers import batched_nms
from detectron2.modeling import GeneralizedRCNN, GeneralizedRCNNWithTTA
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.test_time_augmentation import DatasetMapperTTA
from detectron2.structures import Boxes, Instances

from .fast_rcnn_inference import fast_rcnn_inference
from .mnc import MNC
from .semantic_cascade_roi_heads import SemanticCascadeROIHeads

__all__ = ["CascadeWithPerRoITTA", "MERGES", "MNCWithTTA", "RCNNWithTTA", "check_tta_settings", "with_tta"]

MERGES = ("detectron2", "mmdetection2")


def check_tta_settings(min_sizes, max_size, flip, merge="detectron2"):
    """Raises ValueError naming the ``test.aug`` key when the settings give no augmentation or a size
    that is not a positive integer."""
    if isinstance(min_sizes, (int, str)) or not isinstance(min_sizes, Sequence) or len(min_sizes) == 0:
        raise ValueError(f"test.aug.min_sizes must be a non-empty list of short-edge sizes (one augmentation "
                         f"per size, and its flip with test.aug.flip); got {min_sizes!r}")
    for name, value in [*((f"min_sizes[{i}]", v) for i, v in enumerate(min_sizes)), ("max_size", max_size)]:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"test.aug.{name} must be a positive integer (pixels); got {value!r}")
    if not isinstance(flip, bool):
        raise ValueError(f"test.aug.flip must be True or False; got {flip!r}")
    if merge not in MERGES:
        raise ValueError(f"test.aug.merge must be one of {', '.join(map(repr, MERGES))}; got {merge!r}")


def _box_predictor(roi_heads):
    """The predictor whose test settings give the final detections (a cascade's last stage's)."""
    predictor = roi_heads.box_predictor
    return predictor[-1] if isinstance(predictor, nn.ModuleList) else predictor


def _what_detectron2_reads(model) -> CfgNode:
    """The yacs keys that detectron2's GeneralizedRCNNWithTTA reads, taken from the model itself."""
    heads = model.roi_heads
    predictor = _box_predictor(heads)
    return CfgNode({
        "MODEL": {
            "MASK_ON": bool(getattr(heads, "mask_on", False)),
            "KEYPOINT_ON": bool(getattr(heads, "keypoint_on", False)),
            "LOAD_PROPOSALS": model.proposal_generator is None,
            "ROI_HEADS": {"NUM_CLASSES": heads.num_classes, "NMS_THRESH_TEST": predictor.test_nms_thresh},
        },
        "TEST": {"DETECTIONS_PER_IMAGE": predictor.test_topk_per_image},
    })


def _map_boxes(boxes: torch.Tensor, transform) -> torch.Tensor:
    """(N, 4k) boxes through an fvcore transform, on the host as detectron2's TTA maps them."""
    mapped = transform.apply_box(boxes.detach().cpu().numpy().reshape(-1, 4))
    return torch.as_tensor(mapped, dtype=boxes.dtype, device=boxes.device).reshape(boxes.shape)


def _flipped(transform) -> bool:
    return any(isinstance(t, HFlipTransform) for t in transform.transforms)


class RCNNWithTTA(GeneralizedRCNNWithTTA):
    """
    detectron2's :class:`GeneralizedRCNNWithTTA` (``merge="detectron2"``, see the module docstring),
    configured by the settings of ``test.aug`` (the LazyConfig equivalent of ``TEST.AUG``) instead of a
    yacs config: the keys it reads otherwise (mask on, number of classes, NMS threshold, detections per
    image) come from the model. Works for any GeneralizedRCNN whose ROI heads support
    ``forward_with_given_boxes`` and ``mask_on``: SCNet, HTC, Cascade Mask R-CNN (+ semantic) and
    detectron2's own Mask R-CNN.
    """

    def __init__(self, model, *, min_sizes: Sequence[int], max_size: int, flip: bool = True,
                 batch_size: int = 3):
        """
        Args:
            model: the model (or its DistributedDataParallel) to run on every augmentation.
            min_sizes: short-edge sizes of the augmented images, as ``TEST.AUG.MIN_SIZES``.
            max_size: their longest edge at most, as ``TEST.AUG.MAX_SIZE``.
            flip: each size also flipped horizontally, as ``TEST.AUG.FLIP``.
            batch_size: augmented images per forward pass.
        """
        check_tta_settings(min_sizes, max_size, flip)
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if not isinstance(model, GeneralizedRCNN):
            raise TypeError(f"test-time augmentation needs a GeneralizedRCNN; got {type(model).__name__}")
        mapper = DatasetMapperTTA(min_sizes=[int(s) for s in min_sizes], max_size=int(max_size), flip=flip)
        super().__init__(_what_detectron2_reads(model), model, tta_mapper=mapper, batch_size=batch_size)

    def _features_and_proposals(self, augmented_input):
        """One augmented image's (ImageList, backbone features, proposals)."""
        images = self.model.preprocess_image([augmented_input])
        features = self.model.backbone(images.tensor)
        proposals, _ = self.model.proposal_generator(images, features, None)
        return images, features, proposals[0]


class CascadeWithPerRoITTA(RCNNWithTTA):
    """
    ``merge="mmdetection2"``: the released mmdetection 2 test-time augmentation of the cascades
    (``SCNetRoIHead.aug_test``, ``HybridTaskCascadeRoIHead.aug_test``, ``CascadeRoIHead.aug_test`` with
    ``merge_aug_proposals``, ``merge_aug_bboxes`` and ``merge_aug_masks`` of
    ``mmdet/core/post_processing/merge_augs.py``, in thangvubk/SCNet and mmdetection v2.x):

    1. the RPN proposals of every augmentation, mapped back to the original image, go through one
       class-agnostic NMS at the RPN's threshold; the RPN's ``post_nms_topk`` at test are kept;
    2. each augmentation runs the box cascade on those proposals (mapped into it), giving every RoI the
       last stage's boxes (clipped to the augmented image) and the scores averaged over the stages;
    3. each RoI's boxes (mapped back) and scores are averaged over the augmentations, then thresholded
       and NMS'd per class with the last stage's test settings;
    4. masks as ``merge="detectron2"``: predicted on the detections under every augmentation, their
       probabilities averaged (flips undone) before binarization.

    With one augmentation this differs from plain inference only by step 1's NMS, which plain inference
    runs per FPN level (detectron2's and mmdetection's RPN) and this across them, as released.
    For the ROI heads of :class:`SemanticCascadeROIHeads` (SCNet, HTC, Cascade Mask R-CNN + semantic).
    """

    def __init__(self, model, **settings):
        super().__init__(model, **settings)
        if not isinstance(self.model.roi_heads, SemanticCascadeROIHeads):
            raise TypeError("test.aug.merge='mmdetection2' (per-RoI averaging of the augmentations) is defined "
                            "for the cascades' SemanticCascadeROIHeads (SCNet, HTC, Cascade Mask R-CNN + semantic); "
                            f"got {type(self.model.roi_heads).__name__}: use merge='detectron2'")

    def _inference_one_image(self, input):
        orig_shape = (input["height"], input["width"])
        augmented_inputs, tfms = self._get_augmented_inputs(input)
        # Kept across the steps, as released (one backbone pass per augmentation).
        runs = [self._features_and_proposals(x) for x in augmented_inputs]
        proposal_boxes, objectness_logits = self._merge_proposals([p for _, _, p in runs], tfms)
        heads = self.model.roi_heads
        boxes, scores = [], []
        for (images, features, _), tfm in zip(runs, tfms):
            size = images.image_sizes[0]
            rois = Instances(size, proposal_boxes=Boxes(_map_boxes(proposal_boxes, tfm)),
                             objectness_logits=objectness_logits)
            [(aug_boxes, aug_scores)] = heads.forward_box_candidates(features, [rois])
            clipped = Boxes(aug_boxes.reshape(-1, 4))
            clipped.clip(size)
            boxes.append(_map_boxes(clipped.tensor.view(aug_boxes.shape), tfm.inverse()))
            scores.append(aug_scores)
        predictor = _box_predictor(heads)
        # The NMS of the heads' own inference (the top-k NMS), on the original image.
        [merged], _ = fast_rcnn_inference(
            [torch.stack(boxes).mean(0)], [torch.stack(scores).mean(0)], [orig_shape],
            predictor.test_score_thresh, predictor.test_nms_thresh, predictor.test_topk_per_image,
        )
        if heads.mask_on:
            masks = []
            rescaled = self._rescale_detected_boxes(augmented_inputs, merged, tfms)
            for (_, features, _), aug_instances in zip(runs, rescaled):
                masks.extend(heads.forward_with_given_boxes(features, [aug_instances.to(merged.scores.device)]))
            merged.pred_masks = self._reduce_pred_masks(masks, tfms)
        return {"instances": detector_postprocess(merged, *orig_shape)}

    def _merge_proposals(self, proposals, tfms):
        """mmdetection 2's ``merge_aug_proposals``: in the original image, one NMS over all, the best
        ``post_nms_topk`` kept. Returns their boxes and objectness logits."""
        rpn = self.model.proposal_generator
        boxes = torch.cat([_map_boxes(p.proposal_boxes.tensor, t.inverse()) for p, t in zip(proposals, tfms)])
        logits = torch.cat([p.objectness_logits for p in proposals])
        keep = batched_nms(boxes, logits, torch.zeros_like(logits, dtype=torch.long), rpn.nms_thresh)
        keep = keep[: rpn.post_nms_topk[False]]
        return boxes[keep], logits[keep]


class MNCWithTTA(RCNNWithTTA):
    """
    MNC's test-time augmentation (``merge="detectron2"``; not in the paper nor the released code, defined
    here): every augmentation runs the five stages and gives its candidates (each RoI of stages 3 and 5: its
    class-wise boxes and scores, its soft mask and the box it was predicted in). Mapped back to the original
    image (boxes through the inverse transform, masks mirrored where the augmentation flipped), all
    augmentations' candidates go through MNC's per-class NMS and mask voting once, as one image's
    candidates: a detection's mask is the score-weighted vote of the candidates of every augmentation that
    overlap it. With one augmentation at the test size this is plain inference.
    """

    def _inference_one_image(self, input):
        orig_shape = (input["height"], input["width"])
        augmented_inputs, tfms = self._get_augmented_inputs(input)
        candidates = [self._candidates(x, t) for x, t in zip(augmented_inputs, tfms)]
        merged = self.model.roi_heads._instances(orig_shape, *(torch.cat(c) for c in zip(*candidates)))
        return {"instances": self.model.postprocess(merged, *orig_shape)}

    def _candidates(self, augmented_input, tfm):
        """One augmentation's candidates in the original image: (class boxes R x K x 4, probabilities R x K,
        soft masks R x m x m, mask boxes R x 4)."""
        _, features, proposals = self._features_and_proposals(augmented_input)
        [(_, class_boxes, probs, masks, mask_boxes)] = self.model.roi_heads.forward_candidates(features, [proposals])
        inverse = tfm.inverse()
        if _flipped(tfm):
            masks = masks.flip(-1)
        return _map_boxes(class_boxes, inverse), probs, masks, _map_boxes(mask_boxes, inverse)


def with_tta(model, *, min_sizes, max_size, flip=True, merge="detectron2", batch_size=3) -> nn.Module:
    """``model`` with test-time augmentation: :class:`MNCWithTTA` for MNC, :class:`CascadeWithPerRoITTA`
    for ``merge="mmdetection2"``, else :class:`RCNNWithTTA`. Arguments as ``test.aug``'s (see
    :class:`RCNNWithTTA`)."""
    check_tta_settings(min_sizes, max_size, flip, merge)
    settings = dict(min_sizes=min_sizes, max_size=max_size, flip=flip, batch_size=batch_size)
    if isinstance(getattr(model, "module", model), MNC):
        if merge != "detectron2":
            raise ValueError(f"test.aug.merge={merge!r} is not defined for MNC, whose test-time augmentation merges "
                             "its candidates before NMS and mask voting: use merge='detectron2'")
        return MNCWithTTA(model, **settings)
    if merge == "mmdetection2":
        return CascadeWithPerRoITTA(model, **settings)
    return RCNNWithTTA(model, **settings)
