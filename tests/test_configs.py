"""Every config under configs/ loads, instantiates, saves (as default_setup does) and trains for 2
iterations, then evaluates, under our train_net.py and under detectron2's tools.lazyconfig_train_net,
shrunk by cascades.engine.smoke (tiny images, few proposals; datasets missing here are replaced by
the generated shapes labelled for the model's classes, so that all of this runs without any dataset).
Only the default config trains in the quick suite; the rest is marked slow."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from cascades.engine import smoke
from cascades.engine.config import check_datasets, load_config
from cascades.engine.smoke import smoke_overrides
from detectron2.config import LazyConfig, instantiate
from detectron2.data import MetadataCatalog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
                 if not os.path.relpath(p, ROOT).startswith(os.path.join("configs", "common")))
QUICK = {"configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py"}
TRAINERS = {
    "train_net": [os.path.join(ROOT, "train_net.py")],
    "lazyconfig_train_net": ["-m", "tools.lazyconfig_train_net"],
}


def test_configs_are_found():
    assert QUICK <= set(CONFIGS)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_instantiates_and_saves(config, tmp_path):
    cfg = LazyConfig.load(os.path.join(ROOT, config))
    assert {"model", "dataloader", "optimizer", "lr_multiplier", "train"} <= set(cfg)
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    instantiate(cfg.optimizer)
    instantiate(cfg.lr_multiplier)
    cfg.optimizer.params.model = None
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    assert LazyConfig.load(str(tmp_path / "config.yaml")).train.max_iter == cfg.train.max_iter


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
@pytest.mark.parametrize("config", [c if c in QUICK else pytest.param(c, marks=pytest.mark.slow) for c in CONFIGS])
def test_two_iterations(config, trainer, tmp_path):
    out = str(tmp_path / "out")
    overrides = smoke_overrides(load_config(os.path.join(ROOT, config)), out, max_iter=2)
    result = subprocess.run([sys.executable, *TRAINERS[trainer], "--config-file", config, *overrides], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=900)
    try:
        assert result.returncode == 0, result.stdout[-5000:]
        with open(os.path.join(out, "metrics.json")) as f:
            assert [r["iteration"] for r in map(json.loads, f) if "total_loss" in r] == [0, 1]
        assert torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["iteration"] == 1
        # Evaluation ran (random weights may give no detection at all: then only NaN box results).
        assert "Start inference on" in result.stdout and "copypaste: Task: bbox" in result.stdout
    finally:
        # pytest keeps the last runs' tmp dirs: 96 runs' checkpoints (VGG-16: 1.3 GB each) fill a disk.
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("config", ["configs/COCO-InstanceSegmentation/mnc_R_101_FPN_1x.py",
                                    "configs/COCO-InstanceSegmentation/scnet_X_101_64x4d_FPN_20e.py"])
def test_smoke_overrides_normalize_random_deep_backbones(config):
    """Random R-101 with FrozenBN (an identity) gives ~1e7 features and NaN losses; the smoke run swaps
    every FrozenBN of the backbone for GroupNorm, including those of a list of stages (ResNeXt)."""
    cfg = load_config(os.path.join(ROOT, config))
    cfg = LazyConfig.apply_overrides(cfg, smoke_overrides(cfg, "unused"))
    assert "FrozenBN" not in str(cfg.model.backbone)
    torch.manual_seed(0)
    backbone = instantiate(cfg.model.backbone)
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 96) * 50)
    assert all(f.abs().max() < 1e3 for f in features.values())


@pytest.mark.parametrize("config, num_classes", [("configs/Balloon/htc_R_18_FPN_small.py", 1),
                                                 ("configs/COCO128/scnet_R_18_FPN_small.py", 80),
                                                 ("configs/VOC-SBD/mnc_VGG16_5stage_e2e.py", 20)])
def test_smoke_stand_ins_have_the_models_classes(config, num_classes, monkeypatch):
    """Without its datasets a config trains and is evaluated on the shapes labelled with exactly its
    number of classes (training indexes the model's classes, evaluation refuses classes it lacks)."""
    monkeypatch.setattr(smoke, "_available", lambda name: False)
    cfg = load_config(os.path.join(ROOT, config))
    assert cfg.model.roi_heads.num_classes == num_classes
    cfg = LazyConfig.apply_overrides(cfg, smoke_overrides(cfg, "unused"))
    for split in ("train", "test"):
        name = cfg.dataloader[split].dataset.names
        assert name.startswith("cascades_shapes_") and len(MetadataCatalog.get(name).thing_classes) == num_classes
    check_datasets(cfg)
