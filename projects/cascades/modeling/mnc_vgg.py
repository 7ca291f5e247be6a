"""VGG-16's 13 conv layers as a detectron2 Backbone: MNC's (and Fast/Faster R-CNN's) shared features."""
from typing import Dict, Sequence

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

__all__ = ["VGG16", "build_vgg16_backbone"]

# (block, number of 3x3 convs, output channels); 2x2 max pooling after blocks 1-4, so conv5_3 has
# stride 16 (the fifth pooling belongs to the classifier, replaced by RoI pooling/warping).
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


class VGG16(Backbone):
    """
    conv1_1 ... conv5_3 with ReLU; output ``conv5`` (512 channels, stride 16). Parameters are laid
    out as torchvision's ``vgg16().features`` (``features.<index>.weight``), so an ImageNet VGG-16
    state dict loads after renaming ``features.`` to ``backbone.features.``; Caffe models expect BGR
    input with mean subtraction only (pixel_std 1), as detectron2's defaults.
    """

    def __init__(self, *, in_channels: int = 3, freeze_at: int = 2, out_features: Sequence[str] = ("conv5",)):
        """
        Args:
            freeze_at: the number of conv blocks whose weights stay fixed (2, as Fast R-CNN and MNC
                fine-tune VGG-16 from conv3_1 on); 0 trains all.
            out_features: any of "conv1" ... "conv5": the last conv (after ReLU) of each block.
        """
        super().__init__()
        names = [f"conv{b}" for b, _, _ in _BLOCKS]
        if not out_features or any(f not in names for f in out_features):
            raise ValueError(f"VGG16: out_features must be a non-empty subset of {names}, got {list(out_features)}")
        if not 0 <= freeze_at <= len(_BLOCKS):
            raise ValueError(f"VGG16: freeze_at must be in [0, {len(_BLOCKS)}], got {freeze_at}")
        layers, self._block_ends = [], {}
        channels = in_channels
        for block, num_convs, width in _BLOCKS:
            if block > 1:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            for _ in range(num_convs):
                conv = nn.Conv2d(channels, width, kernel_size=3, padding=1)
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
                conv.requires_grad_(block > freeze_at)
                layers += [conv, nn.ReLU(inplace=True)]
                channels = width
            self._block_ends[f"conv{block}"] = len(layers)
        self.features = nn.Sequential(*layers)
        self._out_features = list(out_features)
        last = max(self._block_ends[f] for f in out_features)
        self.features = self.features[:last]  # nothing beyond the deepest requested output
        self._out_feature_channels = {f"conv{b}": w for b, _, w in _BLOCKS}
        self._out_feature_strides = {f"conv{b}": 2 ** (b - 1) for b, _, _ in _BLOCKS}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"VGG16: expected an N x C x H x W input, got shape {tuple(x.shape)}")
        outputs = {}
        ends = {end: name for name, end in self._block_ends.items() if name in self._out_features}
        for i, layer in enumerate(self.features, start=1):
            x = layer(x)
            if i in ends:
                outputs[ends[i]] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        return 0


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape: ShapeSpec) -> VGG16:
    """yacs entry (keys from :func:`cascades.modeling.mnc.add_mnc_config`): MODEL.BACKBONE.FREEZE_AT
    frozen blocks, outputs MODEL.VGG.OUT_FEATURES."""
    return VGG16(
        in_channels=input_shape.channels, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT, out_features=cfg.MODEL.VGG.OUT_FEATURES
    )
