"""SCNet's ROI heads (Vu et al., AAAI 2021), and Cascade Mask R-CNN as its ablation baseline."""
from typing import List, Optional

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, select_foreground_proposals

from .feature_relay import FeatureRelayHead
from .semantic_cascade_roi_heads import SemanticCascadeROIHeads

__all__ = ["SCNetROIHeads"]


@ROI_HEADS_REGISTRY.register()
class SCNetROIHeads(SemanticCascadeROIHeads):
    """
    Box stages of Cascade R-CNN followed by a mask branch whose input samples are chosen by
    ``sample_consistent``:

    * True, one mask head: SCNet's effective sample consistency. The single (deep) head is trained
      on the last box stage's positive samples and applied to the last stage's boxes at test time.
      Its loss weight is the sum of the stage weights (the paper's Eq. 4).
    * True, one head per stage: naive sample consistency; every head sees the last stage's samples.
    * False, one head per stage: Cascade Mask R-CNN. Head t is trained on stage t's samples.

    With several heads the test-time mask is their average (mask ensemble) and head t's loss is
    weighted by stage t's weight. ``feature_relays`` (one per mask head) add the box-head vector of
    the same RoI, from the stage whose samples the head sees, to the mask RoI features; in training
    only the positive samples exist on the mask side, so only they are relayed.
    """

    @configurable
    def __init__(
        self,
        *,
        sample_consistent: bool = True,
        feature_relays: Optional[List[nn.Module]] = None,
        **kwargs,
    ):
        """
        Args:
            sample_consistent: feed every mask head the last box stage's samples/boxes.
            feature_relays: one :class:`FeatureRelayHead` per mask head, or None.
            Other arguments are those of :class:`SemanticCascadeROIHeads`.
        """
        super().__init__(**kwargs)
        if not self.mask_on:
            raise ValueError("SCNetROIHeads needs mask_in_features, mask_pooler and mask_head")
        if not isinstance(self.mask_head, nn.ModuleList):
            self.mask_head = nn.ModuleList([self.mask_head])
        num_heads = len(self.mask_head)
        if num_heads not in (1, self.num_cascade_stages):
            raise ValueError(
                f"mask_head must be one head or one per box stage ({self.num_cascade_stages}), "
                f"got {num_heads}"
            )
        if num_heads == 1 and not sample_consistent:
            raise ValueError("one mask head without sample consistency is not a cascade: "
                             "use sample_consistent=True or one mask head per stage")
        if feature_relays is not None and len(feature_relays) != num_heads:
            raise ValueError(
                f"feature_relays has {len(feature_relays)} entries, expected one per mask head "
                f"({num_heads})"
            )
        self.sample_consistent = sample_consistent
        self.feature_relays = None if feature_relays is None else nn.ModuleList(feature_relays)
        last = self.num_cascade_stages - 1
        # The box stage whose samples (training) and box-head features feed each mask head.
        self.mask_source_stages = [last if sample_consistent else t for t in range(num_heads)]
        self.mask_loss_weights = (
            [sum(self.stage_loss_weights)] if num_heads == 1 else list(self.stage_loss_weights)
        )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["sample_consistent"] = True
        if cfg.MODEL.ROI_MASK_HEAD.FEATURE_RELAY:
            ret["feature_relays"] = [FeatureRelayHead(cfg)]
        return ret

    def _loss_name(self, head_index: int) -> str:
        return "loss_mask" if len(self.mask_head) == 1 else f"loss_mask_stage{head_index}"

    def _mask_losses(self, features, stages, context, targets):
        losses = {}
        roi_cache = {}  # the naive variant's heads share RoIs: pool them once
        for i, head in enumerate(self.mask_head):
            source = self.mask_source_stages[i]
            if source not in roi_cache:
                fg, is_fg = select_foreground_proposals(stages[source].proposals, self.num_classes)
                boxes = [x.proposal_boxes for x in fg]
                roi_cache[source] = (fg, cat(is_fg), self._mask_roi_features(features, boxes, context))
            fg, is_fg, x = roi_cache[source]
            if self.feature_relays is not None:
                x = x + self.feature_relays[i](stages[source].box_features[is_fg])
            loss = head(x, fg)["loss_mask"] * self.mask_loss_weights[i]
            losses[self._loss_name(i)] = loss
        return losses

    def _mask_inference(self, features, instances, context):
        boxes = [x.pred_boxes for x in instances]
        x = self._mask_roi_features(features, boxes, context)
        if self.feature_relays is None and len(self.mask_head) == 1:
            return self.mask_head[0](x, instances)
        box_in = [features[f] for f in self.box_in_features]
        relay_inputs = {}  # box-head features of the detections, per source stage
        logits = []
        for i, head in enumerate(self.mask_head):
            head_input = x
            if self.feature_relays is not None:
                source = self.mask_source_stages[i]
                if source not in relay_inputs:
                    relay_inputs[source] = self._box_head_features(box_in, boxes, source, context)
                head_input = x + self.feature_relays[i](relay_inputs[source])
            logits.append(head.layers(head_input))
        return self._average_mask_probs(logits, instances)
