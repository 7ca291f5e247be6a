"""SCNet's global context branch: a whole-image feature vector and a multi-label classifier."""
from typing import Dict, List

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import Instances

from .residual_convs import ConvStack

__all__ = ["GlobalContextHead", "image_class_targets"]


def image_class_targets(instances: List[Instances], num_classes: int) -> torch.Tensor:
    """(N, num_classes) multi-hot targets: 1 for every class present in the image."""
    targets = torch.zeros(len(instances), num_classes, device=instances[0].gt_classes.device)
    for i, inst in enumerate(instances):
        targets[i, inst.gt_classes] = 1.0
    return targets


class GlobalContextHead(nn.Module):
    """
    The top FPN level goes through ``num_convs`` convs (residual pairs) and global average pooling.
    The pooled vector is the context added to every box and mask RoI feature; a linear layer on it
    predicts which classes are in the image (multi-label, binary cross-entropy).
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_feature: str,
        num_classes: int,
        conv_dim: int = 256,
        num_convs: int = 4,
        loss_weight: float = 3.0,
        norm: str = "",
        relu_after_residual: bool = False,
    ):
        """
        Args:
            input_shape: shapes of the backbone features, by name.
            in_feature: the feature to read, SCNet uses the top FPN level (p6).
            num_classes: number of foreground classes.
            conv_dim: channels of the convs, hence of the context vector; must equal the RoI
                feature channels it is added to.
            num_convs: number of 3x3 convs (even: they form residual pairs).
            loss_weight: multiplier of the BCE loss (lambda in the SCNet paper).
            norm: normalization of the convs, as in :class:`FusedSemanticHead`.
            relu_after_residual: a ReLU after each pair's sum; False as released (mmdetection's
                ``GlobalContextHead`` with ``conv_to_res=True``: a ``ResLayer`` of
                ``SimplifiedBasicBlock``, ``mmdet/models/roi_heads/mask_heads/global_context_head.py``
                lines 61-70).
        """
        super().__init__()
        self.in_feature = in_feature
        self.num_classes = num_classes
        self.loss_weight = loss_weight
        self.convs = ConvStack(
            input_shape[in_feature].channels, conv_dim, num_convs, True, norm, relu_after_residual
        )
        self.classifier = nn.Linear(conv_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.constant_(self.classifier.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        c = cfg.MODEL.GLOBAL_CONTEXT_HEAD
        return {
            "input_shape": input_shape,
            "in_feature": c.IN_FEATURE,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dim": c.CONV_DIM,
            "num_convs": c.NUM_CONVS,
            "loss_weight": c.LOSS_WEIGHT,
            "norm": c.NORM,
            "relu_after_residual": c.RELU_AFTER_RESIDUAL,
        }

    def forward(self, features: Dict[str, torch.Tensor]):
        """
        Returns:
            logits (Tensor): (N, num_classes) multi-label logits.
            context (Tensor): (N, conv_dim) pooled context vector.
        """
        context = F.adaptive_avg_pool2d(self.convs(features[self.in_feature]), 1).flatten(1)
        return self.classifier(context), context

    def losses(self, logits: torch.Tensor, instances: List[Instances]) -> Dict[str, torch.Tensor]:
        targets = image_class_targets(instances, self.num_classes).to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        return {"loss_glbctx": loss * self.loss_weight}
