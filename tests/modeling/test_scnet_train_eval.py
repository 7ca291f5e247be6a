"""Whole models on real images: train -> checkpoint -> evaluate with COCOEvaluator; bad input."""
import math
import os

import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.utils.events import EventStorage
from fvcore.nn.precise_bn import update_bn_stats

from cascades.data.storage import missing_message

SHORT_SIDE = 128


@pytest.mark.parametrize("method", ["scnet", "htc"])
def test_train_checkpoint_evaluate_round_trip(method, small_config, balloon_subset, trainer, evaluator, tmp_path):
    cfg = small_config(method, SHORT_SIDE)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    mapper = instantiate(cfg.dataloader.train.mapper)
    name = balloon_subset(2)
    losses = trainer(model, mapper, DatasetCatalog.get(name), iters=2, warmup=1, lr=0.001)
    assert all(math.isfinite(v) for v in losses.values())
    # After two steps BN's running statistics are still the initial ones, and in eval mode the features
    # are so large that every foreground score underflows to 0: recompute them as PreciseBN does.
    with EventStorage():
        update_bn_stats(model, [[mapper(d) for d in DatasetCatalog.get(name)]] * 4, num_iters=4)

    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    restored = instantiate(cfg.model)
    DetectionCheckpointer(restored).load(os.path.join(tmp_path, "model.pth"))
    # Every score kept, so that there are detections to compare after two steps from scratch.
    for m in (model, restored):
        m.roi_heads.box_predictor[-1].test_score_thresh = 0.0
    # The restored model predicts exactly what the trained one does, and evaluates to the same APs.
    model.eval()
    restored.eval()
    sample = instantiate(cfg.dataloader.test.mapper)(DatasetCatalog.get(name)[0])
    with torch.no_grad():
        a, b = model([sample])[0]["instances"], restored([sample])[0]["instances"]
    assert len(a) == len(b) > 0
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.equal(a.pred_masks, b.pred_masks)
    assert a.pred_masks.shape[1:] == (sample["height"], sample["width"])
    first = balloon_subset(1)  # one image keeps the two evaluations short
    results = evaluator(restored, first, SHORT_SIDE, tmp_path / "restored")
    expected = evaluator(model, first, SHORT_SIDE, tmp_path / "trained")
    assert set(results) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert set(results[task]) == set(expected[task]) and "AP50" in results[task]
        for metric, value in expected[task].items():
            assert results[task][metric] == value or math.isnan(value) and math.isnan(results[task][metric])


def test_missing_semantic_maps_are_a_clear_error(small_config, balloon_subset):
    from detectron2.data import DatasetMapper

    cfg = small_config("scnet", SHORT_SIDE)
    model = instantiate(cfg.model)
    model.train()
    cfg.dataloader.train.mapper._target_ = DatasetMapper  # no "sem_seg" in its outputs
    mapper = instantiate(cfg.dataloader.train.mapper)
    batch = [mapper(d) for d in DatasetCatalog.get(balloon_subset(2))]
    with EventStorage(), pytest.raises(ValueError, match="sem_seg_targets is None"):
        model(batch)


def test_coco128_grayscale_and_unannotated_images_train(small_config):
    import cascades.data  # noqa: F401

    if "coco128_seg_train" not in DatasetCatalog.list():
        pytest.skip(missing_message("coco128-seg"))
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(os.path.join(os.path.dirname(__file__), "../../configs/COCO128/scnet_R_18_FPN_small.py"))
    cfg.dataloader.train.mapper.augmentations[0].short_edge_length = SHORT_SIDE
    model = instantiate(cfg.model)
    model.train()
    mapper = instantiate(cfg.dataloader.train.mapper)
    dicts = {os.path.basename(d["file_name"]): d for d in DatasetCatalog.get("coco128_seg_train")}
    batch = [mapper(dicts["000000000086.jpg"]), mapper(dicts["000000000250.jpg"])]
    assert len(batch[1]["instances"]) == 0
    with EventStorage():
        losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
