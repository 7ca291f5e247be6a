"""The SCNet paper's ablations (Tables 2 and 3) and its HTC / Cascade Mask R-CNN baselines as configs: every
one on the paper's schedule (20 epochs, lr 0.02 x0.1 after epochs 16 and 19, 16 images per batch, the
same data), each ablation row differs from the baseline only in the components it names, each being
the full SCNet's, and all take the released configs' box settings where the paper is silent."""
import os

import pytest
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, instantiate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO = "configs/COCO-InstanceSegmentation/"
BASELINE = "scnet_ablation_baseline_R_50_FPN_20e"
SCNET = "scnet_R_50_FPN_20e"
# Table 2 / 3 row -> the ROI-heads keys its components set (SC: one mask head, fed the last stage's samples).
ROWS = {
    "scnet_ablation_sc_R_50_FPN_20e": {"sample_consistent", "mask_head"},
    "scnet_ablation_naive_sc_R_50_FPN_20e": {"sample_consistent"},
    "scnet_ablation_fr_R_50_FPN_20e": {"feature_relays"},
    "scnet_ablation_gc_R_50_FPN_20e": {"global_context_head"},
    "scnet_ablation_sc_fr_R_50_FPN_20e": {"sample_consistent", "mask_head", "feature_relays"},
    SCNET: {"sample_consistent", "mask_head", "feature_relays", "global_context_head"},
}
# The baselines on the paper's schedule -> their models' 1x configs.
BASELINES_20E = {
    "htc_R_50_FPN_20e": "htc_R_50_FPN_1x",
    "cascade_mask_rcnn_semantic_R_50_FPN_20e": "cascade_mask_rcnn_semantic_R_50_FPN_1x",
}
EPOCH = 117266 // 16  # coco_2017_train images with annotations / batch size


def load(name):
    return OmegaConf.to_container(LazyConfig.load(os.path.join(ROOT, COCO, name + ".py")))


def differences(a, b, path=()):
    """The key paths where the containers ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            yield from differences(a.get(key), b.get(key), path + (key,))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from differences(x, y, path + (i,))
    elif a != b:
        yield path


@pytest.mark.parametrize("row", sorted(ROWS))
def test_each_ablation_row_changes_only_the_components_it_names_to_scnets(row):
    base, cfg, scnet = load(BASELINE), load(row), load(SCNET)
    changed = set(differences(base, cfg))
    assert {p[:3] for p in changed} == {("model", "roi_heads", key) for key in ROWS[row]}
    heads, scnet_heads = cfg["model"]["roi_heads"], scnet["model"]["roi_heads"]
    for key in ROWS[row]:
        if key == "feature_relays" and not heads["sample_consistent"]:
            # Without SC, one relay per stage's mask head.
            assert heads[key] == scnet_heads[key] * 3
        else:
            assert heads[key] == scnet_heads[key], key


def test_the_ablation_baseline_is_cascade_mask_rcnn_with_scnets_semantic_branch():
    base, cascade, scnet = load(BASELINE), load("cascade_mask_rcnn_semantic_R_50_FPN_20e"), load(SCNET)
    assert set(differences(cascade, base)) == {("model", "roi_heads", "semantic_head", "residual")}
    assert base["model"]["roi_heads"]["semantic_head"] == scnet["model"]["roi_heads"]["semantic_head"]
    heads = base["model"]["roi_heads"]
    assert len(heads["mask_head"]) == 3 and not heads["sample_consistent"]
    assert heads.get("feature_relays") is None and heads.get("global_context_head") is None


@pytest.mark.parametrize("name", sorted(BASELINES_20E))
def test_htc_and_cascade_baselines_on_the_papers_schedule_keep_their_models(name):
    assert load(name)["model"] == load(BASELINES_20E[name])["model"]


@pytest.mark.parametrize("name", sorted([BASELINE, *ROWS, *BASELINES_20E]))
def test_every_row_trains_on_the_papers_schedule_and_data(name):
    cfg = load(name)
    scnet = load(SCNET)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert cfg[key] == scnet[key], key
    lazy = LazyConfig.load(os.path.join(ROOT, COCO, name + ".py"))
    assert lazy.train.max_iter == 20 * EPOCH
    assert lazy.optimizer.lr == 0.02 and lazy.dataloader.train.total_batch_size == 16
    milestones = instantiate(lazy.lr_multiplier)._schedulers[1]._milestones
    assert [round(m / EPOCH) for m in milestones] == [16, 19]


def test_the_relays_of_the_fr_row_are_three_modules():
    cfg = LazyConfig.load(os.path.join(ROOT, COCO, "scnet_ablation_fr_R_50_FPN_20e.py"))
    heads = instantiate(cfg.model).roi_heads
    relays = list(heads.feature_relays)
    assert len(relays) == len(heads.mask_head) == 3
    assert len({id(p) for relay in relays for p in relay.parameters()}) == sum(len(list(r.parameters())) for r in relays)


@pytest.mark.parametrize("name", ["scnet_R_50_FPN_20e", "htc_R_50_FPN_20e", "cascade_mask_rcnn_semantic_R_50_FPN_20e"])
def test_box_settings_are_the_released_configs(name):
    """thangvubk/SCNet configs/scnet/scnet_r50_fpn_1x_coco.py and its bases (htc, cascade_mask_rcnn_r50_fpn):
    RPN smooth L1 beta 1/9, 2000 / 1000 proposals; 512 RoIs, 25% positives, IoU 0.5 / 0.6 / 0.7; two shared
    fc 1024, class-agnostic regression, target stds (0.1, 0.2) / (0.05, 0.1) / (0.033, 0.067) (detectron2
    weights 1 / std), smooth L1 beta 1; RoIAlign 7 (boxes) and 14 (masks), adaptive sampling, aligned."""
    model = instantiate(LazyConfig.load(os.path.join(ROOT, COCO, name + ".py")).model)
    rpn, heads = model.proposal_generator, model.roi_heads
    assert rpn.smooth_l1_beta == pytest.approx(1 / 9) and rpn.box_reg_loss_type == "smooth_l1"
    assert rpn.pre_nms_topk == rpn.post_nms_topk == {True: 2000, False: 1000}
    assert (heads.batch_size_per_image, heads.positive_fraction) == (512, 0.25)
    assert [m.thresholds[1] for m in heads.proposal_matchers] == [0.5, 0.6, 0.7]
    for predictor, stds in zip(heads.box_predictor, [(0.1, 0.2), (0.05, 0.1), (0.033, 0.067)]):
        assert predictor.box2box_transform.weights == pytest.approx([1 / stds[0]] * 2 + [1 / stds[1]] * 2)
        assert predictor.bbox_pred.out_features == 4 and predictor.smooth_l1_beta == 1.0
    for box_head in heads.box_head:
        assert [fc.out_features for fc in box_head.fcs] == [1024, 1024] and not box_head.conv_norm_relus
    for pooler, size in ((heads.box_pooler, 7), (heads.mask_pooler, 14)):
        assert pooler.output_size == (size, size)
        assert all(p.sampling_ratio == 0 and p.aligned for p in pooler.level_poolers)
