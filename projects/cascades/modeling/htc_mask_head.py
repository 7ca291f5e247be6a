"""HTC's mask head: a Mask R-CNN head that also receives the previous stage's mask features."""
import fvcore.nn.weight_init as weight_init
import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead

__all__ = ["HTCMaskHead"]


@ROI_MASK_HEAD_REGISTRY.register()
class HTCMaskHead(MaskRCNNConvUpsampleHead):
    """
    Mask information flow: when ``with_prev_stage``, the previous stage's conv features (before
    upsampling) go through a 1x1 conv and are added to this stage's RoI features.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, with_prev_stage: bool = True, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.prev_stage_proj = None
        if with_prev_stage:
            out_channels = self.conv_norm_relus[-1].out_channels
            self.prev_stage_proj = Conv2d(
                out_channels, input_shape.channels, 1, activation=nn.ReLU()
            )
            weight_init.c2_msra_fill(self.prev_stage_proj)

    @classmethod
    def from_config(cls, cfg, input_shape):
        # Stage 0 has no predecessor; the ROI heads set it per stage.
        return {**super().from_config(cfg, input_shape), "with_prev_stage": False}

    def mask_features(self, x: torch.Tensor, prev_features=None) -> torch.Tensor:
        """The conv features handed to the next stage."""
        if self.prev_stage_proj is not None:
            if prev_features is None:
                raise ValueError("prev_features is None but this stage fuses the previous one's")
            x = x + self.prev_stage_proj(prev_features)
        for conv in self.conv_norm_relus:
            x = conv(x)
        return x

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.predictor(self.deconv_relu(self.deconv(features)))

    def layers(self, x):
        if self.prev_stage_proj is not None:
            raise ValueError("this HTC stage needs the previous stage's features: use mask_features")
        return self.predict(self.mask_features(x))
