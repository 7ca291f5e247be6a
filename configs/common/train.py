"""Training defaults for our train_net.py (and detectron2's tools/lazyconfig_train_net.py)."""

import torch

from detectron2 import model_zoo

train = model_zoo.get_config("common/train.py").train
train.update(
    output_dir="./output",
    # From-scratch defaults; a config that starts from weights sets this to a local path, a URL or a
    # detectron2:// name (e.g. detectron2://ImageNetPretrained/torchvision/R-50.pkl).
    init_checkpoint="",
    device="cuda" if torch.cuda.is_available() else "cpu",
    seed=-1,
    # Parts recomputed in the backward pass to save memory (cascades.modeling.activation_checkpointing):
    # any of backbone, rpn_head, box_head, mask_head, semantic_head.
    activation_checkpointing=[],
)
