"""test.aug in configs, Predictor(cfg, tta=True) and train_net.py --eval-only --tta."""
import json
import os
import subprocess
import sys

import cv2
import pytest
import torch

import detectron2.data.transforms as T
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog

from cascades.data.default_shapes import register_default_shapes  # noqa: F401  registers the shapes
from cascades.engine import Checkpointer, Predictor
from cascades.engine.config import load_config
from cascades.engine.smoke import smoke_overrides
from cascades.engine.test_aug import add_test_aug, resolve_test_aug, scaled_test_aug
from cascades.modeling.test_time_augmentation import RCNNWithTTA

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCNET = os.path.join(ROOT, "configs/Balloon/scnet_R_18_FPN_small.py")
DEMO = os.path.join(ROOT, "configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py")


def test_config_without_test_aug_gets_the_released_scales_of_its_test_size():
    cfg = LazyConfig.load(SCNET)  # tested at short side 256, max size 448
    assert "test" not in cfg
    assert resolve_test_aug(cfg) == dict(enabled=False, min_sizes=[192, 256, 320, 384, 448], max_size=784,
                                          flip=True, merge="detectron2")
    assert "test" not in add_test_aug(cfg)  # nothing asked for TTA
    assert add_test_aug(cfg, enable=True).test.aug.enabled is True


def test_common_test_aug_is_the_released_scnet_tta():
    cfg = LazyConfig.load(os.path.join(ROOT, "configs/common/test_aug.py"))
    assert cfg.test.aug.min_sizes == [600, 800, 1000, 1200, 1400] and cfg.test.aug.flip is True
    assert scaled_test_aug(800, 1333, scales=(1.0,), flip=False) == dict(
        enabled=False, min_sizes=[800], max_size=1333, flip=False, merge="detectron2")


def test_given_keys_win_and_the_rest_are_filled_in():
    cfg = LazyConfig.apply_overrides(LazyConfig.load(SCNET),
                                     ["+test.aug.min_sizes=[300]", "+test.aug.merge=mmdetection2"])
    assert resolve_test_aug(cfg) == dict(enabled=False, min_sizes=[300], max_size=784, flip=True, merge="mmdetection2")


@pytest.mark.parametrize("override, message", [
    ("+test.aug.min_sizes=[]", "test.aug.min_sizes must be a non-empty list"),
    ("+test.aug.max_size=0", "test.aug.max_size must be a positive integer"),
    ("+test.aug.scales=[1.0]", r"test.aug has unknown keys \['scales'\]"),
    ("+test.aug.enabled=yes", "test.aug.enabled must be True or False"),
])
def test_bad_test_aug_is_refused(override, message):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(SCNET), [override])
    with pytest.raises(ValueError, match=message):
        add_test_aug(cfg, enable=True)


def test_predictor_with_tta(tmp_path):
    cfg = LazyConfig.load(SCNET)
    cfg.train.device = "cpu"
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    Checkpointer(model, str(tmp_path)).save("model")
    cfg.train.init_checkpoint = str(tmp_path / "model.pth")
    cfg = LazyConfig.apply_overrides(cfg, ["+test.aug.min_sizes=[160,256]", "+test.aug.max_size=448"])
    image = cv2.imread(DatasetCatalog.get("cascades_shapes_val")[0]["file_name"])[:, :200]

    predictor = Predictor(cfg, tta=True)
    assert isinstance(predictor.model, RCNNWithTTA)
    outputs = predictor(image)["instances"]
    assert not isinstance(Predictor(cfg).model, RCNNWithTTA)  # test.aug.enabled is False
    # The TTA of test.aug on the image resized as the test mapper resizes it.
    resized = T.AugInput(image)
    predictor.augmentations(resized)
    inputs = {"image": torch.as_tensor(resized.image.transpose(2, 0, 1).astype("float32")),
              "height": image.shape[0], "width": image.shape[1]}
    with torch.no_grad():
        expected = RCNNWithTTA(model, min_sizes=[160, 256], max_size=448, flip=True)([inputs])[0]["instances"]
    assert len(outputs) == len(expected) > 0
    assert torch.equal(outputs.pred_boxes.tensor, expected.pred_boxes.tensor)
    assert torch.equal(outputs.pred_masks, expected.pred_masks)
    assert outputs.pred_masks.shape[1:] == image.shape[:2]


def test_train_net_eval_only_with_tta(tmp_path):
    cfg = load_config(DEMO)
    torch.manual_seed(0)
    Checkpointer(instantiate(cfg.model), str(tmp_path)).save("weights")
    overrides = smoke_overrides(cfg, str(tmp_path / "out"), size=128)
    overrides = [o for o in overrides if not o.startswith("train.init_checkpoint")]
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_net.py"), "--config-file", DEMO, "--eval-only", "--tta", *overrides,
         f"train.init_checkpoint={tmp_path / 'weights.pth'}", "+test.aug.min_sizes=[96,128]", "+test.aug.max_size=192"],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    with open(tmp_path / "out" / "eval_results.json") as f:
        results = json.load(f)
    assert {"bbox", "segm", "bbox_TTA", "segm_TTA"} == set(results)
    saved = LazyConfig.load(str(tmp_path / "out" / "config.yaml"))
    assert saved.test.aug == dict(enabled=True, min_sizes=[96, 128], max_size=192, flip=True, merge="detectron2")


def test_train_net_refuses_a_bad_test_aug_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train_net.py"), "--config-file", DEMO, "--eval-only", "--tta",
         f"train.output_dir={tmp_path}", "+test.aug.min_sizes=[0]"],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert result.returncode != 0
    assert result.stdout.strip().splitlines()[-1] == (
        "train_net.py: error: test.aug.min_sizes[0] must be a positive integer (pixels); got 0")
