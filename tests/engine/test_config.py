import re

import pytest

from cascades.engine.config import (apply_overrides, check_datasets, check_training_settings, load_config,
                                    resolve_config_file)
from detectron2.config import LazyConfig
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

DEMO = "configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py"


@pytest.fixture(scope="module")
def cfg():
    return LazyConfig.load(DEMO)


def test_overrides_apply_and_unknown_keys_are_refused(cfg):
    apply_overrides(cfg, ["train.max_iter=7", "dataloader.train.mapper.augmentations.0.max_size=300",
                          "+train.note=hello"])
    assert (cfg.train.max_iter, cfg.dataloader.train.mapper.augmentations[0].max_size) == (7, 300)
    assert cfg.train.note == "hello"
    with pytest.raises(KeyError, match="no key 'train.max_itr'; did you mean train.max_iter"):
        apply_overrides(cfg, ["train.max_itr=3"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(cfg, ["train.max_iter"])


def test_config_file_resolution(tmp_path):
    assert resolve_config_file(DEMO) == DEMO
    assert resolve_config_file("DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py").endswith(DEMO)
    with pytest.raises(FileNotFoundError, match="'missing.py' does not exist"):
        resolve_config_file("missing.py")
    with pytest.raises(ValueError, match="expected a LazyConfig .py file"):
        resolve_config_file("config.yaml")
    with pytest.raises(ValueError, match="--config-file is required"):
        load_config("")


def test_dataset_checks(cfg, tmp_path):
    check_datasets(cfg)  # the generated shapes are fine before their first load
    name = "test_config_missing_folder"
    if name not in DatasetCatalog:
        register_coco_instances(name, {}, str(tmp_path / "gone" / "train.json"), str(tmp_path / "gone"))
    cfg = cfg.copy()
    cfg.dataloader.train.dataset.names = name
    with pytest.raises(FileNotFoundError, match=f"Dataset '{name}': its json_file .*gone/train.json"):
        check_datasets(cfg)
    cfg.dataloader.train.dataset.names = "not_registered_anywhere"
    with pytest.raises(KeyError, match="'not_registered_anywhere' of the config is not registered"):
        check_datasets(cfg)
    assert MetadataCatalog.get(name).json_file.endswith("train.json")


@pytest.mark.parametrize("override, message", [
    ("train.max_iter=abc", "train.max_iter must be an integer >= 1; got 'abc'"),
    ("train.max_iter=-5", "train.max_iter must be an integer >= 1; got -5"),
    ("train.max_iter=2.5", "train.max_iter must be an integer >= 1; got 2.5"),
    ("train.checkpointer.period=0", "train.checkpointer.period must be an integer >= 1; got 0"),
    ("train.checkpointer.max_to_keep=0", "train.checkpointer.max_to_keep must be an integer >= 1 or None; got 0"),
    ("train.log_period=0", "train.log_period must be an integer >= 1; got 0"),
    ("train.eval_period=-1", "train.eval_period must be an integer >= 0 (0: no periodic evaluation); got -1"),
    ("dataloader.train.total_batch_size=0", "dataloader.train.total_batch_size must be an integer >= 1; got 0"),
    ("dataloader.train.total_batch_size=3", "total_batch_size=3 must be divisible by the number of processes (2"),
    ("lr_multiplier.warmup_iter=-1", "warmup_iter must be a non-negative integer; got -1"),
])
def test_training_settings_are_checked_before_start(override, message):
    cfg = load_config(DEMO, [override])
    with pytest.raises(ValueError, match=re.escape(message)):
        check_training_settings(cfg, world_size=2)


def test_good_training_settings_pass():
    check_training_settings(load_config(DEMO, ["train.checkpointer.max_to_keep=null"]), world_size=2)
