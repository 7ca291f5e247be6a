"""SCNet's single deep mask head (effective sample consistency)."""
from typing import List

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead

from .residual_convs import ConvStack

__all__ = ["SCNetMaskHead"]


@ROI_MASK_HEAD_REGISTRY.register()
class SCNetMaskHead(MaskRCNNConvUpsampleHead):
    """
    The three 4-conv heads of Cascade Mask R-CNN "stacked" into one: 12 3x3 convs with a skip
    connection around every two, then detectron2's deconv and per-class 1x1 predictor.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: List[int],
        residual: bool = True,
        relu_after_residual: bool = False,
        **kwargs,
    ):
        """
        Args:
            conv_dims: as in :class:`MaskRCNNConvUpsampleHead`: the channels of the N-1 convs and of
                the deconv; the convs must all have the same width (residual pairs need it).
            residual: group the convs in residual pairs; False gives a plain deep stack.
            relu_after_residual: a ReLU after each pair's sum (a ResNet BasicBlock); False is the
                released head (mmdetection's ``SCNetMaskHead``: a ``ResLayer`` of
                ``SimplifiedBasicBlock``, ``mmdet/models/roi_heads/mask_heads/scnet_mask_head.py``
                lines 19-28), whose blocks end at the sum.
            Other arguments are those of :class:`MaskRCNNConvUpsampleHead`.
        """
        if len(set(conv_dims[:-1])) != 1:
            raise ValueError(f"conv_dims must give >= 1 convs of one width, got {conv_dims}")
        conv_dim = conv_dims[0]
        super().__init__(
            ShapeSpec(channels=conv_dim), num_classes=num_classes, conv_dims=conv_dims[-1:], **kwargs
        )
        self.convs = ConvStack(
            input_shape.channels,
            conv_dim,
            len(conv_dims) - 1,
            residual,
            kwargs.get("conv_norm", ""),
            relu_after_residual,
        )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["residual"] = cfg.MODEL.ROI_MASK_HEAD.RESIDUAL
        ret["relu_after_residual"] = cfg.MODEL.ROI_MASK_HEAD.RELU_AFTER_RESIDUAL
        return ret

    def layers(self, x):
        # nn.Sequential order would put self.convs last; run the convs first explicitly.
        x = self.convs(x)
        return self.predictor(self.deconv_relu(self.deconv(x)))
