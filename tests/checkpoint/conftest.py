"""Shared by the checkpoint tests: a private conversion cache per test, mmdetection files as published."""
import pytest

from cascades.checkpoint import convert_mmdet_state_dict
from mmdet_samples import mmdet_state_dict, save_with_hash, seeded_mmdet_state_dict


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def full_size_file(tmp_path_factory):
    """A full-size mmdetection Cascade Mask R-CNN R-50 checkpoint (random values) and its conversion."""
    state_dict = mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco")
    return save_with_hash(state_dict, str(tmp_path_factory.mktemp("mmdet"))), convert_mmdet_state_dict(state_dict)


@pytest.fixture(scope="session")
def seeded_file(tmp_path_factory):
    """The same model with seeded weights that compute finite, meaningful outputs (mmdet_seeded.py)."""
    state_dict = seeded_mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco")
    return save_with_hash(state_dict, str(tmp_path_factory.mktemp("seeded"))), convert_mmdet_state_dict(state_dict)
