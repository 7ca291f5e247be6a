"""The model zoo's mmdetection checkpoints: one config per published checkpoint, URLs as published."""
import os
import re

from cascades.model_zoo import get_checkpoint_url, get_config
from cascades.model_zoo.mmdet_checkpoints import MMDET_CHECKPOINTS
from detectron2.config import LazyConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDER = "COCO-InstanceSegmentation/mmdet"


def test_one_config_per_published_checkpoint():
    configs = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs", FOLDER)) if f.endswith(".py"))
    assert configs == sorted(c.config for c in MMDET_CHECKPOINTS)


def test_urls_are_mmdetections_and_name_their_sha256():
    for c in MMDET_CHECKPOINTS:
        assert c.url.startswith("https://download.openmmlab.com/mmdetection/v2.0/")
        assert re.search(r"-[0-9a-f]{8}\.pth$", c.url), c.url
        url = get_checkpoint_url(f"{FOLDER}/{c.config}.py")
        assert url == "mmdet://" + c.url
        assert get_config(f"{FOLDER}/{c.config}.py", trained=True).train.init_checkpoint == url


def test_configs_follow_mmdetections_conventions():
    for c in MMDET_CHECKPOINTS:
        # Read from the repository's configs/ (not the model zoo's copy), as tools/mutation_check.py needs.
        cfg = LazyConfig.load(os.path.join(ROOT, "configs", FOLDER, f"{c.config}.py"))
        model = cfg.model
        assert model.input_format == "RGB" and cfg.dataloader.train.mapper.image_format == "RGB"
        assert list(model.pixel_mean) == [123.675, 116.28, 103.53]
        assert all(not s.stride_in_1x1 and s.norm == "FrozenBN" for s in model.backbone.bottom_up.stages)
        groups = {s.num_groups for s in model.backbone.bottom_up.stages}
        assert groups == ({32} if "32x4d" in c.config else {64} if "64x4d" in c.config else {1})
        depth = sum(s.num_blocks for s in model.backbone.bottom_up.stages) * 3 + 2
        assert depth == (101 if "_101_" in c.config else 50)
        thresh = {p.test_score_thresh for p in model.roi_heads.box_predictors}
        assert thresh == ({0.05} if c.config.startswith("cascade") else {0.001})
        assert (model.roi_heads.semantic_head is None) == c.config.startswith("cascade")


def test_docs_table_is_the_published_one():
    with open(os.path.join(ROOT, "docs", "MMDET.md")) as f:
        docs = f.read()
    for c in MMDET_CHECKPOINTS:
        assert f"| `{c.config}` | [{c.mmdet_name}]({c.url}) | {c.box_ap} | {c.mask_ap} |" in docs, c.config
