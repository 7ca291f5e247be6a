"""Hybrid Task Cascade's ROI heads (Chen et al., CVPR 2019), as the SCNet paper's Eq. (2)."""
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, select_foreground_proposals
from detectron2.modeling.roi_heads.mask_head import mask_rcnn_loss
from detectron2.utils.events import get_event_storage

from .htc_mask_head import HTCMaskHead
from .options import check_bool
from .semantic_cascade_roi_heads import SemanticCascadeROIHeads

__all__ = ["HTCROIHeads"]


@ROI_HEADS_REGISTRY.register()
class HTCROIHeads(SemanticCascadeROIHeads):
    """
    One :class:`HTCMaskHead` per box stage. Interleaved execution: mask stage t is trained on the
    boxes regressed by box stage t (re-labelled at stage t's IoU threshold), not on its input
    boxes. Mask information flow: head t adds head t-1's conv features, which are recomputed on
    stage t's RoIs. At test time all heads run in chain on the final boxes and their mask
    probabilities are averaged (``mask_ensemble``).
    """

    @configurable
    def __init__(self, *, mask_ensemble: bool = True, **kwargs):
        """
        Args:
            mask_ensemble: at test, the mask is the mean of all the chained heads' probabilities, as
                in the papers ("mask ensemble", SCNet's "Hybrid Task Cascade" section) and in the
                released mmdetection 2 code (``HybridTaskCascadeRoIHead.simple_test``); False: the last
                head's only, as mmdetection 3.x computes it (its ``_mask_forward`` appends the
                prediction after the loop over the heads, ``mmdet/models/roi_heads/htc_roi_head.py``
                lines 207-215 in 3.3.0).
            Other arguments are those of :class:`SemanticCascadeROIHeads`.
        """
        super().__init__(**kwargs)
        self.mask_ensemble = check_bool("mask_ensemble", mask_ensemble)
        heads = self.mask_head if self.mask_on else []
        if len(heads) != self.num_cascade_stages or not all(
            isinstance(h, HTCMaskHead) for h in heads
        ):
            raise ValueError(f"mask_head must be {self.num_cascade_stages} HTCMaskHead, one per stage")
        flows = [h.prev_stage_proj is not None for h in heads]
        if flows != [False] + [True] * (len(heads) - 1):
            raise ValueError(
                f"HTCMaskHead with_prev_stage must be False for stage 0 and True after, got {flows}"
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["mask_ensemble"] = cfg.MODEL.ROI_MASK_HEAD.MASK_ENSEMBLE
        resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        shape = ShapeSpec(channels=channels, height=resolution, width=resolution)
        ret["mask_head"] = [
            HTCMaskHead(cfg, shape, with_prev_stage=t > 0)
            for t in range(len(cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS))
        ]
        return ret

    def _chain(self, x, last_stage: int):
        """Conv features of mask heads 0..last_stage on the same RoI features ``x``."""
        feats = []
        prev = None
        for head in self.mask_head[: last_stage + 1]:
            prev = head.mask_features(x, prev)
            feats.append(prev)
        return feats

    def _mask_losses(self, features, stages, context, targets):
        losses = {}
        for t, (stage, head) in enumerate(zip(stages, self.mask_head)):
            regressed = self.box_predictor[t].predict_boxes(stage.predictions, stage.proposals)
            sizes = [x.image_size for x in stage.proposals]
            proposals = self._create_proposals_from_boxes(regressed, sizes, stage.proposals)
            # Logged apart from the box stages' samples: the positives mask stage t trains on.
            with get_event_storage().name_scope("mask_branch"):
                proposals = self._match_and_label_boxes(proposals, t, targets)
            fg, _ = select_foreground_proposals(proposals, self.num_classes)
            x = self._mask_roi_features(features, [p.proposal_boxes for p in fg], context)
            logits = head.predict(self._chain(x, t)[-1])
            loss = mask_rcnn_loss(logits, fg, head.vis_period) * head.loss_weight
            losses[f"loss_mask_stage{t}"] = loss * self.stage_loss_weights[t]
        return losses

    def _mask_inference(self, features, instances, context):
        x = self._mask_roi_features(features, [x.pred_boxes for x in instances], context)
        feats = self._chain(x, len(self.mask_head) - 1)
        heads = list(zip(self.mask_head, feats))
        if not self.mask_ensemble:
            heads = heads[-1:]
        logits = [head.predict(f) for head, f in heads]
        return self._average_mask_probs(logits, instances)
