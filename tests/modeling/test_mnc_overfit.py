"""From scratch on 4 real balloon images, MNC (5 stages, end to end) as configs/Balloon/mnc_R_18_FPN_small.py
trains it (its optimizer and schedule, the released box-gradient clip, no box_grad_scale) fits them: mask
AP50 >= 80 by COCOEvaluator; the SDS evaluator agrees on the same predictions (mAP^r@0.5 >= 70: VOC's
11-point AP of one class moves in steps of 1/11, so it is given a step of room)."""
import os

import pytest
import torch

import detectron2.data.transforms as T
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detectron2.evaluation import COCOEvaluator, inference_on_dataset

from cascades.evaluation.sds_evaluation import SDSEvaluator
from mnc_helpers import REPO, train_with_config

SHORT_SIDE = 192
ITERATIONS = 600


@pytest.mark.slow
def test_mnc_overfits_four_balloon_images(balloon_subset, tmp_path):
    cfg = LazyConfig.load(os.path.join(REPO, "configs/Balloon/mnc_R_18_FPN_small.py"))
    heads = cfg.model.roi_heads
    assert heads.end_to_end and heads.num_stages == 5 and heads.box_grad_scale == 1.0 and heads.box_grad_clip > 0
    cfg.dataloader.train.mapper.augmentations[0].short_edge_length = SHORT_SIDE
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    name = balloon_subset(4)
    train_with_config(cfg, model, DatasetCatalog.get(name), ITERATIONS, log_period=50)

    test_mapper = DatasetMapper(is_train=False, augmentations=[T.ResizeShortestEdge(SHORT_SIDE, 448)], image_format="BGR")
    loader = build_detection_test_loader(DatasetCatalog.get(name), mapper=test_mapper, num_workers=0)
    model.eval()
    coco = inference_on_dataset(model, loader, COCOEvaluator(name, tasks=("bbox", "segm"), output_dir=str(tmp_path)))
    sds = inference_on_dataset(model, loader, SDSEvaluator(name, distributed=False))
    print("COCO", dict(coco), "SDS", dict(sds))
    assert coco["segm"]["AP50"] >= 80.0, coco
    assert sds["segm"]["mAP@0.5"] >= 70.0, sds
