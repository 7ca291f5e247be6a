"""mmdetection checkpoints for the tests: the key manifests under mmdet_keys/ list every tensor (name and
shape) of mmdetection 3.3.0's own models, written by write_mmdet_keys.py in the reference environment;
here they are filled with random values, without mmdetection."""
import hashlib
import json
import os
import sys

import torch

from detectron2.config import LazyConfig, instantiate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmdet_keys")
CONFIGS = os.path.join(ROOT, "configs", "COCO-InstanceSegmentation", "mmdet")
sys.path.insert(0, os.path.join(ROOT, "tests", "parity"))
from mmdet_seeded import GOLDEN_CLASS_LOGIT_STD, random_weights  # noqa: E402


def _shapes(name):
    with open(os.path.join(KEYS, f"{name}.json")) as f:
        return json.load(f)


def mmdet_state_dict(name, seed=0):
    """mmdetection's tensors for the model ``name``, with random values (standard normal: for what
    the tensors are, not for what the model computes)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: (torch.randint(0, 100, shape, generator=gen) if k.endswith("num_batches_tracked")
                else torch.randn(shape, generator=gen)) for k, shape in _shapes(name).items()}


def seeded_mmdet_state_dict(name):
    """mmdetection's tensors for the model ``name`` with the seeded weights of tests/parity/mmdet_seeded.py
    (features of order 1 through every layer), as the golden files of mmdet_golden/ were computed with."""
    return random_weights(_shapes(name), class_logit_std=GOLDEN_CLASS_LOGIT_STD)


def our_model(config):
    return instantiate(LazyConfig.load(os.path.join(CONFIGS, f"{config}.py")).model)


def tiny_mmdet_state_dict(name="cascade-mask-rcnn_r50_fpn_1x_coco"):
    """mmdetection's tensor names with one-element tensors, except those the model is read from."""
    full = mmdet_state_dict(name)
    keep = {"backbone.layer1.0.conv2.weight", "roi_head.bbox_head.0.fc_cls.weight"}
    return {k: v if k in keep else v.flatten()[:1].clone() for k, v in full.items()}


def save_with_hash(state_dict, folder, stem="model"):
    """Saves like mmdetection's publish_model: the file name carries the start of its sha256."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{stem}.pth")
    torch.save({"state_dict": state_dict, "meta": {}}, path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:8]
    final = os.path.join(folder, f"{stem}-{digest}.pth")
    os.replace(path, final)
    return final


def loaded_exactly(model, converted):
    ours = model.state_dict()
    assert set(converted) == {k for k in ours if not k.endswith("num_batches_tracked")}
    for key, value in converted.items():
        assert torch.equal(ours[key], value), key
