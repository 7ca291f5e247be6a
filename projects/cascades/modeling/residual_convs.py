"""Stacks of 3x3 convs, plain or grouped into residual blocks of two (SCNet's heads)."""
import fvcore.nn.weight_init as weight_init
from torch import nn
from torch.nn import functional as F

from detectron2.layers import Conv2d, get_norm

from .options import check_bool


class _ResidualPair(nn.Module):
    """Two 3x3 convs with an identity skip, so a deep stack of convs still trains: ``conv1 -> norm ->
    ReLU -> conv2 -> norm``, plus the input. The released block (mmdetection's ``SimplifiedBasicBlock``,
    ``mmdet/models/layers/res_layer.py``, lines 176-195) stops at the sum ("Last ReLU in forward
    function is removed"); ``relu_after_residual=True`` adds the ReLU of a ResNet BasicBlock."""

    def __init__(self, channels: int, norm: str = "", relu_after_residual: bool = False):
        super().__init__()
        self.conv1 = Conv2d(
            channels, channels, 3, padding=1, bias=not norm, norm=get_norm(norm, channels)
        )
        self.conv2 = Conv2d(
            channels, channels, 3, padding=1, bias=not norm, norm=get_norm(norm, channels)
        )
        self.relu_after_residual = relu_after_residual
        for conv in (self.conv1, self.conv2):
            weight_init.c2_msra_fill(conv)

    def forward(self, x):
        out = self.conv2(F.relu(self.conv1(x))) + x
        return F.relu(out) if self.relu_after_residual else out


class ConvStack(nn.Sequential):
    """
    ``num_convs`` 3x3 convs of ``channels`` channels (after an optional 1x1 projection of the
    input when ``in_channels`` differs). With ``residual=True`` they are grouped in pairs with an
    identity skip around each pair, as in SCNet's mask, semantic and global-context heads;
    ``relu_after_residual`` then says whether a ReLU follows each pair's sum (see :class:`_ResidualPair`).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_convs: int,
        residual: bool,
        norm: str = "",
        relu_after_residual: bool = False,
    ):
        super().__init__()
        check_bool("relu_after_residual", relu_after_residual)
        if residual and num_convs % 2:
            raise ValueError(f"residual ConvStack needs an even num_convs, got {num_convs}")
        if in_channels != channels:
            proj = Conv2d(in_channels, channels, 1, activation=nn.ReLU())
            weight_init.c2_msra_fill(proj)
            self.add_module("input_proj", proj)
        if residual:
            for k in range(num_convs // 2):
                self.add_module(f"res_block{k + 1}", _ResidualPair(channels, norm, relu_after_residual))
        else:
            for k in range(num_convs):
                conv = Conv2d(
                    channels,
                    channels,
                    3,
                    padding=1,
                    bias=not norm,
                    norm=get_norm(norm, channels),
                    activation=nn.ReLU(),
                )
                weight_init.c2_msra_fill(conv)
                self.add_module(f"conv{k + 1}", conv)
