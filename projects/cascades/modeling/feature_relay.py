"""SCNet's feature relay: box-head vectors mapped onto the mask head's feature grid."""
import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable

__all__ = ["FeatureRelayHead"]


class FeatureRelayHead(nn.Module):
    """fc from the box head's output vector to ``out_channels x roi_size x roi_size``, then bilinear
    upsampling by ``scale_factor`` to the mask RoI resolution (7 -> 14)."""

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 1024,
        out_channels: int = 256,
        roi_size: int = 7,
        scale_factor: int = 2,
    ):
        super().__init__()
        self.out_shape = (out_channels, roi_size, roi_size)
        self.scale_factor = scale_factor
        self.fc = nn.Linear(in_channels, out_channels * roi_size * roi_size)

    @classmethod
    def from_config(cls, cfg):
        return {
            "in_channels": cfg.MODEL.ROI_BOX_HEAD.FC_DIM,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "roi_size": cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
            "scale_factor": cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
            // cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION,
        }

    def forward(self, box_features: torch.Tensor) -> torch.Tensor:
        x = self.fc(box_features).view(-1, *self.out_shape)
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=True)
