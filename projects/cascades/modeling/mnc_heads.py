"""MNC's per-RoI heads: stage 2 (class-agnostic mask regression) and stage 3's two feature pathways."""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import FastRCNNConvFCHead

__all__ = ["MNCMaskHead", "MNCBoxHead"]


class MNCMaskHead(nn.Module):
    """Stage 2: RoI feature -> fc ``fc_dim`` (ReLU) -> fc m*m mask logits, one class-agnostic mask per
    RoI (the paper's m = 28, fc 256). Fully connected, unlike Mask R-CNN's FCN head: every output
    pixel sees the whole RoI."""

    @configurable
    def __init__(self, *, input_shape: ShapeSpec, fc_dim: int = 256, mask_size: int = 28):
        super().__init__()
        if fc_dim < 1 or mask_size < 1:
            raise ValueError(f"MNCMaskHead: fc_dim and mask_size must be positive, got {fc_dim}, {mask_size}")
        in_dim = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        self.mask_size = mask_size
        self.fc = nn.Linear(in_dim, fc_dim)
        self.predictor = nn.Linear(fc_dim, mask_size * mask_size)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {"input_shape": input_shape, "fc_dim": cfg.MODEL.MNC.MASK_FC_DIM, "mask_size": cfg.MODEL.MNC.MASK_SIZE}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """R x C x H x W RoI features -> R x m x m mask logits."""
        x = F.relu(self.fc(torch.flatten(x, 1)))
        return self.predictor(x).view(-1, self.mask_size, self.mask_size)


class MNCBoxHead(nn.Module):
    """Stage 3's features: a mask pathway (the RoI feature multiplied by the stage-2 mask, then fcs)
    and a box pathway (the plain RoI feature, then fcs), concatenated. The box pathway keeps the
    instance classifiable when the mask blanks most of the feature out (e.g. on background)."""

    @configurable
    def __init__(self, *, input_shape: ShapeSpec, fc_dims: List[int]):
        super().__init__()
        if not fc_dims:
            raise ValueError("MNCBoxHead: fc_dims must name at least one fc layer (the paper: [4096, 4096])")
        self.mask_pathway = FastRCNNConvFCHead(input_shape, conv_dims=[], fc_dims=list(fc_dims))
        self.box_pathway = FastRCNNConvFCHead(input_shape, conv_dims=[], fc_dims=list(fc_dims))
        self._output_size = 2 * fc_dims[-1]

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {"input_shape": input_shape, "fc_dims": [cfg.MODEL.ROI_BOX_HEAD.FC_DIM] * cfg.MODEL.ROI_BOX_HEAD.NUM_FC}

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """
        Args:
            features: R x C x h x w RoI features.
            masks: R x h x w soft masks (stage 2's, resized to the RoI resolution).
        """
        if masks.shape != (features.shape[0], *features.shape[2:]):
            raise ValueError(
                f"MNCBoxHead: masks must be R x h x w = {(features.shape[0], *features.shape[2:])}, "
                f"got {tuple(masks.shape)}"
            )
        return torch.cat([self.mask_pathway(features * masks[:, None]), self.box_pathway(features)], dim=1)

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=self._output_size)
