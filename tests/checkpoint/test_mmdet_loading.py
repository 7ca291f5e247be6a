"""Loading mmdetection checkpoints into a model: through this project's Checkpointer (train_net.py,
Predictor, model_zoo.get) and detectron2's own DetectionCheckpointer, never leniently."""
import logging
import os
import re

import pytest
import torch

import cascades  # noqa: F401  registers mmdet://
from cascades.checkpoint import CLASS_SPECIFIC_KEYS, MMDetConversionError, refuse_mmdet_state_dict
from cascades.engine import Checkpointer
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate

from mmdet_samples import CONFIGS, tiny_mmdet_state_dict


def cascade_model(num_classes):
    cfg = LazyConfig.load(os.path.join(CONFIGS, "cascade_mask_rcnn_R_50_FPN_1x.py"))
    cfg.model.roi_heads.num_classes = num_classes
    return instantiate(cfg.model)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_another_class_count_is_a_one_line_error_for_inference(full_size_file):
    """Predictor, model_zoo.get(trained=True) and --eval-only load with strict=True."""
    source, _ = full_size_file
    model = cascade_model(num_classes=3)
    before = snapshot(model)
    with pytest.raises(MMDetConversionError, match=rf"^mmdet://{re.escape(source)} has another label set "
                                                   r"\(80 classes vs 3 in the model\): set the model's class") as e:
        Checkpointer(model, strict=True).load(f"mmdet://{source}")
    assert "\n" not in str(e.value)
    assert_unchanged(model, before)


def test_fine_tuning_leaves_out_the_class_layers_with_one_warning(full_size_file, caplog):
    """train.init_checkpoint for training on another label set: detectron2's behaviour, in one warning."""
    source, converted = full_size_file
    model = cascade_model(num_classes=3)
    initial = {k: v for k, v in snapshot(model).items() if CLASS_SPECIFIC_KEYS.fullmatch(k)}
    with caplog.at_level(logging.WARNING):
        Checkpointer(model).load(f"mmdet://{source}")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "(80 classes vs 3 in the model)" in warnings[0], warnings
    assert set(initial) == {f"roi_heads.{layer}.{p}" for t in range(3) for p in ("weight", "bias")
                            for layer in (f"box_predictor.{t}.cls_score", f"mask_head.{t}.predictor")}
    ours = model.state_dict()
    for key, value in initial.items():
        assert torch.equal(ours[key], value), key
    for key, value in converted.items():
        if key not in initial:
            assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("strict", [True, False], ids=["inference", "training"])
@pytest.mark.parametrize("wrapped", [True, False], ids=["checkpoint", "bare state dict"])
def test_unconverted_mmdet_file_is_refused_naming_the_mmdet_path(tmp_path, wrapped, strict):
    path = str(tmp_path / "scnet_r50_fpn_1x_coco-c3f09857.pth")
    state_dict = tiny_mmdet_state_dict()
    torch.save({"state_dict": state_dict, "meta": {"epoch": 12}} if wrapped else state_dict, path)
    model = torch.nn.Linear(2, 2)
    before = snapshot(model)
    with pytest.raises(MMDetConversionError, match=rf"^{re.escape(path)} is an mmdetection checkpoint \(tensors "
                                                   rf"named backbone\.layer1\..*\).*: load it as "
                                                   rf"mmdet://{re.escape(path)} to convert it$"):
        Checkpointer(model, strict=strict).load(path)
    assert_unchanged(model, before)


def test_detectron2s_checkpointer_refuses_unconverted_mmdet_state_dicts_through_the_guard(tmp_path):
    """detectron2's DetectionCheckpointer (tools.lazyconfig_train_net) loads a state dict of foreign
    names leniently, as nothing; the model's load_state_dict pre-hook refuses it."""
    model = torch.nn.Linear(2, 2)
    model.register_load_state_dict_pre_hook(refuse_mmdet_state_dict)
    before = snapshot(model)
    bare = str(tmp_path / "bare.pth")
    torch.save(tiny_mmdet_state_dict(), bare)
    with pytest.raises(MMDetConversionError, match=r"is an mmdetection checkpoint .*: load it as "
                                                   r"mmdet://<its path or URL> to convert it"):
        DetectionCheckpointer(model).load(bare)
    assert_unchanged(model, before)
    model.load_state_dict({"weight": torch.zeros(2, 2), "bias": torch.zeros(2)})  # other state dicts load


def test_our_models_refuse_unconverted_mmdet_state_dicts_under_detectron2s_checkpointer(tmp_path):
    """SemanticRCNN (every SCNet, HTC and Cascade config) registers the guard itself."""
    cfg = LazyConfig.load(os.path.join(os.path.dirname(__file__), "../../configs/Balloon/scnet_R_18_FPN_small.py"))
    model = instantiate(cfg.model)
    before = snapshot(model)
    bare = str(tmp_path / "bare.pth")
    torch.save(tiny_mmdet_state_dict(), bare)
    with pytest.raises(MMDetConversionError, match=r"is an mmdetection checkpoint"):
        DetectionCheckpointer(model).load(bare)
    assert_unchanged(model, before)
