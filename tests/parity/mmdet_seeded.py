"""Seeded random weights for mmdetection's SCNet / HTC / Cascade Mask R-CNN, by tensor name and shape.

Plain torch: the reference runner (mmdet_reference.py, in .venv-mmdet) gives them to mmdetection's
model, and the fast tests (tests/checkpoint) rebuild the same tensors from mmdetection's key manifests
without mmdetection. torch.Generator's stream is the same in both environments (same torch)."""
import math
from typing import Dict, List

import torch

__all__ = ["SEED", "CLASS_LOGIT_STD", "GOLDEN_CLASS_LOGIT_STD", "MASK_LOGIT_STD", "random_weights"]

SEED = 0
# Logit scales: top classes and mask pixels well apart from each other and from the thresholds.
CLASS_LOGIT_STD = 6.0
# Without the calibration of mmdet_reference.calibrate (the golden files of tests/checkpoint), SCNet's
# logits come out several times larger than set: at 6.0 many of its scores round to 1.0 and NMS among
# equal scores has no defined order.
GOLDEN_CLASS_LOGIT_STD = 1.5
MASK_LOGIT_STD = 8.0
OBJECTNESS_LOGIT_STD = 4.0
DELTA_STD = 0.5  # box deltas before the coder's stds: boxes move, stay on the image


def _weight_std(module: str, fan_in: int, class_logit_std: float) -> float:
    if "fc_cls" in module or "glbctx_head.fc" in module or "semantic_head.conv_logits" in module:
        return class_logit_std / math.sqrt(fan_in)
    if "mask_head" in module and "conv_logits" in module:
        return MASK_LOGIT_STD / math.sqrt(fan_in)
    if "rpn_cls" in module:
        return OBJECTNESS_LOGIT_STD / math.sqrt(fan_in)
    if "fc_reg" in module or "rpn_reg" in module:
        return DELTA_STD / math.sqrt(fan_in)
    return math.sqrt(2.0 / fan_in)  # He-normal


def random_weights(shapes: Dict[str, List[int]], seed: int = SEED,
                   class_logit_std: float = CLASS_LOGIT_STD) -> Dict[str, torch.Tensor]:
    """
    Weights that make every layer matter, for mmdetection's tensor names and shapes (in order):
    He-normal convs and fcs, non-zero biases, random BatchNorm affine parameters and statistics (the
    last BN of each residual block scaled down so that 101 layers keep features of order 1), and
    output layers scaled for clear decisions. BatchNorm step counters are 0.
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std):
        return torch.randn(shape, generator=gen) * std

    def uniform(shape, low, high):
        return torch.rand(shape, generator=gen) * (high - low) + low

    out = {}
    for name, shape in shapes.items():
        module, leaf = name.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            out[name] = torch.zeros(shape, dtype=torch.long)
        elif ".bn" in name or "downsample.1" in name or module.endswith("backbone.bn1"):
            last_in_block = ".bn3" in name or "downsample.1" in name
            if leaf == "weight":
                out[name] = uniform(shape, 0.1, 0.3) if last_in_block else uniform(shape, 0.5, 1.5)
            elif leaf == "bias":
                out[name] = normal(shape, 0.1)
            elif leaf == "running_mean":
                out[name] = normal(shape, 0.2)
            else:  # running_var
                out[name] = uniform(shape, 0.5, 2.0)
        elif leaf == "weight":
            fan_in = math.prod(shape[1:])
            std = _weight_std(module, fan_in, class_logit_std)
            out[name] = normal(shape, std)
            if std != math.sqrt(2.0 / fan_in) and "reg" not in module:
                # A classifier on ReLU features (all >= 0) with random weights favours one class
                # everywhere; weights summing to zero per class make the input decide.
                out[name] -= out[name].flatten(1).mean(1).view(-1, *[1] * (len(shape) - 1))
        else:  # biases
            out[name] = normal(shape, 0.1)
    return out
