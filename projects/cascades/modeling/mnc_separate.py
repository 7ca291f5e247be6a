"""Separate networks per MNC stage, for the paper's Table 1 baselines (Sec. 7.1): (a) three separate
networks trained step by step, each on the outputs of the trained earlier ones; (b) the same with the
shared convolutional layers taken from the last stage's network and kept fixed while each stage's own
layers are trained again. configs/VOC-SBD/mnc_VGG16_table1{a,b}_step*.py run the steps; :class:`MNC`'s
``freeze`` holds the networks that a step does not train."""
from typing import Dict, Optional

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

__all__ = ["StagewiseBackbone"]


class StagewiseBackbone(Backbone):
    """
    One backbone per stage network, each a keyword argument named after its network (e.g.
    ``StagewiseBackbone(rpn=..., mask=..., category=...)``); the features of network ``n`` are returned as ``"{n}_{feature}"`` (e.g. "mask_conv5"),
    which the RPN's and the ROI heads' ``in_features`` / ``box_in_features`` select. With ``shared`` set
    to one of the names, only that network runs and its features are returned under every network's
    names: one set of shared convolutional layers (Table 1 (b) takes the last stage's).
    """

    def __init__(self, *, shared: Optional[str] = None, **nets: Backbone):
        super().__init__()
        if not nets:
            raise ValueError("StagewiseBackbone: give at least one backbone, e.g. StagewiseBackbone(rpn=..., mask=...)")
        if shared is not None and shared not in nets:
            raise ValueError(f"StagewiseBackbone: shared must be one of {sorted(nets)} or None, got {shared!r}")
        self.nets = nn.ModuleDict(nets)
        self.shared = shared

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.shared is not None:
            features = self.nets[self.shared](x)
            return {f"{name}_{k}": v for name in self.nets for k, v in features.items()}
        return {f"{name}_{k}": v for name, net in self.nets.items() for k, v in net(x).items()}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        shapes = {name: net.output_shape() for name, net in self.nets.items()}
        if self.shared is not None:
            shapes = {name: shapes[self.shared] for name in self.nets}
        return {f"{name}_{k}": s for name, per_net in shapes.items() for k, s in per_net.items()}

    @property
    def size_divisibility(self) -> int:
        return max(net.size_divisibility for net in self.nets.values())
