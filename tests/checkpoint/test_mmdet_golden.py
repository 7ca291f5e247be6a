"""Our converted SCNet, HTC and Cascade Mask R-CNN (R-50-FPN) compute what mmdetection's own code
computed at the same seeded weights on one small synthetic image: every stage and the final detections.

mmdet_golden/ holds mmdetection's outputs, written by tests/parity/write_mmdet_golden.py in the
reference environment; the weights are rebuilt here from mmdetection's key manifests (mmdet_keys/)
by the same seeded generator (tests/parity/mmdet_seeded.py), so this runs without mmdetection. The
weights go the user's way: an mmdetection checkpoint file, loaded by Predictor through mmdet://."""
import os

import pytest
import torch

from cascades.engine import Predictor
from detectron2.config import LazyConfig

from mmdet_samples import CONFIGS, save_with_hash, seeded_mmdet_state_dict
from parity import BOXES_PX, assert_stages_agree, compare_final, compare_stages  # on the path by mmdet_samples

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmdet_golden")
# our config -> mmdetection's key manifest
MODELS = {
    "scnet_R_50_FPN_1x": "scnet_r50_fpn_1x_coco",
    "htc_R_50_FPN_1x": "htc_r50_fpn_1x_coco",
    "cascade_mask_rcnn_R_50_FPN_1x": "cascade-mask-rcnn_r50_fpn_1x_coco",
}
SCORES = 1e-4


def predictor(model, folder):
    cfg = LazyConfig.load(os.path.join(CONFIGS, f"{model}.py"))
    cfg.train.init_checkpoint = f"mmdet://{save_with_hash(seeded_mmdet_state_dict(MODELS[model]), folder)}"
    cfg.train.device = "cpu"
    cfg.dataloader.test.mapper.augmentations = []  # the image is at its test size: mmdetection's Resize kept it
    return Predictor(cfg)


@pytest.mark.parametrize("model", MODELS)
def test_every_stage_and_the_detections_are_mmdetections(model, tmp_path):
    golden = torch.load(os.path.join(GOLDEN, f"{model}.pt"), weights_only=True)
    ours = predictor(model, str(tmp_path))
    stages = compare_stages(ours.model, golden)
    assert_stages_agree(stages)
    assert stages["proposals matched"] == 1, stages
    # The predictor takes the image as cv2 reads it (BGR) and converts it to the config's RGB.
    instances = ours(golden["image_bgr"].permute(1, 2, 0).numpy())["instances"]
    score_thresh = ours.model.roi_heads.box_predictor[-1].test_score_thresh
    final = compare_final(instances, golden, score_thresh, ensemble=False)
    # Every detection matches but those whose box clipping left empty: mmdetection keeps them,
    # detectron2's detector_postprocess drops them (docs/MMDET.md).
    empty = final["empty boxes (mmdet keeps them; detectron2 drops them)"]
    assert final["matched"] == final["detections (mmdet)"] - empty > 0 and final["unmatched"] == 0, final
    assert len(instances) == final["matched"]
    assert final["score"] < SCORES and final["box (px)"] < BOXES_PX, final
