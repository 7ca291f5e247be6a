"""HTC's semantic segmentation branch: FPN levels fused at one stride, convs, per-pixel classifier."""
from typing import Dict, List, Optional

import fvcore.nn.weight_init as weight_init
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY

from .options import check_bool
from .residual_convs import ConvStack

__all__ = ["FusedSemanticHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class FusedSemanticHead(nn.Module):
    """
    Resizes every input level to the ``fusion_level`` (bilinear) and projects it with a 1x1 conv +
    ReLU, and sums them; then ``num_convs`` 3x3 convs (residual pairs in SCNet, plain in HTC). Returns
    the per-pixel class logits and a 1x1-conv embedding that the ROI heads pool and add to the box and
    mask RoI features.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: List[str],
        fusion_level: str,
        num_classes: int,
        conv_dim: int = 256,
        num_convs: int = 4,
        residual: bool = False,
        loss_weight: float = 0.2,
        ignore_value: int = 255,
        norm: str = "",
        resize_before_lateral: bool = True,
        align_corners: bool = True,
        relu_after_residual: bool = False,
    ):
        """
        Args:
            input_shape: shapes of the backbone features, by name.
            in_features: the features to fuse (e.g. p2..p6).
            fusion_level: the feature whose resolution the fused map has (p3: stride 8).
            num_classes: number of semantic classes, background included.
            conv_dim: channels of the convs and of the embedding.
            num_convs: number of 3x3 convs after fusion.
            residual: group the convs in residual pairs (SCNet) instead of a plain stack (HTC).
            loss_weight: multiplier of the cross-entropy loss (gamma in the SCNet paper).
            ignore_value: target value ignored by the loss.
            norm: normalization of the 3x3 convs (see :func:`detectron2.layers.get_norm`); the
                released model has none, models trained from scratch are steadier with one.
            resize_before_lateral: resize each level, then its 1x1 conv + ReLU, as the released
                head does (mmdetection's ``FusedSemanticHead.forward``,
                ``mmdet/models/roi_heads/mask_heads/fused_semantic_head.py`` lines 114-121); False:
                the 1x1 conv + ReLU at the level's own resolution, then the resize (an FPN's order).
            align_corners: ``align_corners`` of the bilinear resize; True as released (same lines).
            relu_after_residual: with ``residual``, a ReLU after each pair's sum; False as released
                (see :class:`~cascades.modeling.residual_convs.ConvStack`).
        """
        super().__init__()
        if fusion_level not in in_features:
            raise ValueError(f"fusion_level={fusion_level!r} must be one of in_features={in_features}")
        self.in_features = in_features
        self.fusion_level = fusion_level
        self.stride = input_shape[fusion_level].stride
        self.loss_weight = loss_weight
        self.ignore_value = ignore_value
        self.resize_before_lateral = check_bool("resize_before_lateral", resize_before_lateral)
        self.align_corners = check_bool("align_corners", align_corners)
        self.lateral_convs = nn.ModuleList(
            Conv2d(input_shape[f].channels, conv_dim, 1, activation=nn.ReLU()) for f in in_features
        )
        self.convs = ConvStack(conv_dim, conv_dim, num_convs, residual, norm, relu_after_residual)
        self.embedding = Conv2d(conv_dim, conv_dim, 1, activation=nn.ReLU())
        self.predictor = Conv2d(conv_dim, num_classes, 1)
        for layer in [*self.lateral_convs, self.embedding]:
            weight_init.c2_msra_fill(layer)
        # Small logits at start: the loss begins near log(num_classes) instead of exploding.
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        c = cfg.MODEL.SEMANTIC_HEAD
        return {
            "input_shape": input_shape,
            "in_features": c.IN_FEATURES,
            "fusion_level": c.FUSION_LEVEL,
            "num_classes": c.NUM_CLASSES,
            "conv_dim": c.CONV_DIM,
            "num_convs": c.NUM_CONVS,
            "residual": c.RESIDUAL,
            "loss_weight": c.LOSS_WEIGHT,
            "ignore_value": c.IGNORE_VALUE,
            "norm": c.NORM,
            "resize_before_lateral": c.RESIZE_BEFORE_LATERAL,
            "align_corners": c.ALIGN_CORNERS,
            "relu_after_residual": c.RELU_AFTER_RESIDUAL,
        }

    def forward(self, features: Dict[str, torch.Tensor]):
        """
        Returns:
            logits (Tensor): (N, num_classes, H/stride, W/stride).
            embedding (Tensor): (N, conv_dim, H/stride, W/stride), the feature shared with RoIs.
        """
        size = features[self.fusion_level].shape[-2:]
        levels = {}
        for name, lateral in zip(self.in_features, self.lateral_convs):
            if self.resize_before_lateral:
                levels[name] = lateral(self._resize(features[name], size))
            else:
                levels[name] = self._resize(lateral(features[name]), size)
        # Summed from the fusion level on, in the released head's order.
        fused = levels.pop(self.fusion_level)
        for x in levels.values():
            fused = fused + x
        x = self.convs(fused)
        return self.predictor(x), self.embedding(x)

    def _resize(self, x: torch.Tensor, size) -> torch.Tensor:
        if x.shape[-2:] == size:
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """
        Args:
            targets: (N, H, W) int64 class map at input resolution (padded with ``ignore_value``);
                it is subsampled (nearest) to the logits' resolution, as the released code does.
        """
        targets = F.interpolate(targets[:, None].float(), size=logits.shape[-2:], mode="nearest")
        targets = targets[:, 0].long()
        if (targets == self.ignore_value).all():
            # cross_entropy averages over no pixels -> NaN; an all-ignored batch teaches nothing.
            return {"loss_semantic_seg": logits.sum() * 0}
        loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value)
        return {"loss_semantic_seg": loss * self.loss_weight}

    def check_targets(self, targets: Optional[torch.Tensor]) -> torch.Tensor:
        if targets is None:
            raise ValueError(
                "sem_seg_targets is None: the semantic branch needs a 'sem_seg' map per training "
                "image; use cascades.data.SemanticDatasetMapper, which derives one from the "
                "instance masks when the dataset has no sem_seg_file_name"
            )
        return targets
