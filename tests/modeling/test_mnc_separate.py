"""MNC's Table 1 (a)/(b) baselines: one backbone per stage network (StagewiseBackbone), stage 3 pooling
its own network's features (box_in_features), and step-by-step training that trains one network at a
time (MNC.freeze), as configs/VOC-SBD/mnc_VGG16_table1{a,b}_step*.py set them up."""
import os

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes

from cascades.modeling.mnc import VGG16, StagewiseBackbone
from mnc_helpers import REPO, controlled_heads, default_batch, proposals, tiny_fpn_config, train_losses

STEP_CONFIGS = [f"configs/VOC-SBD/mnc_VGG16_table1{a}_step{s}_{n}.py" for a in "ab"
                for s, n in ((1, "rpn"), (2, "mask"), (3, "category"))]


def _nets():
    torch.manual_seed(0)
    return {name: VGG16(out_features=["conv2"]) for name in ("rpn", "mask", "category")}


def test_stagewise_backbone_runs_one_network_per_stage():
    nets = _nets()
    backbone = StagewiseBackbone(**nets)
    x = torch.rand(1, 3, 16, 16)
    out = backbone(x)
    assert set(out) == {"rpn_conv2", "mask_conv2", "category_conv2"}
    for name, net in nets.items():
        torch.testing.assert_close(out[f"{name}_conv2"], net(x)["conv2"])
    assert not torch.equal(out["rpn_conv2"], out["mask_conv2"])
    assert backbone.output_shape()["mask_conv2"] == ShapeSpec(channels=128, stride=2)


def test_shared_stagewise_backbone_gives_every_stage_one_networks_features():
    nets = _nets()
    out = StagewiseBackbone(shared="category", **nets)(torch.rand(1, 3, 16, 16))
    for name in ("rpn", "mask"):
        assert out[f"{name}_conv2"] is out["category_conv2"]
    with pytest.raises(ValueError, match="shared must be one of"):
        StagewiseBackbone(shared="box", **nets)


def test_category_stage_pools_its_own_features():
    """box_in_features: stage 2 warps map "f", stage 3 warps map "g" (4 x 4 warp, 2 x 2 max, 2 x 2 max)."""
    heads = controlled_heads(box_in_features=["g"])
    seen = {}
    heads.mask_head.register_forward_pre_hook(lambda m, args: seen.update(mask=args[0]))
    heads.box_head.register_forward_pre_hook(lambda m, args: seen.update(box=args[0]))
    f, g = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8) + 2
    heads._run_pair({"f": f, "g": g}, [proposals([[0, 0, 4, 4]], size=8)])
    box = [Boxes(torch.tensor([[0.0, 0, 4, 4]]))]
    torch.testing.assert_close(seen["mask"], heads.pooler([f], box))
    torch.testing.assert_close(seen["box"], heads.pooler([g], box).amax(dim=(2, 3), keepdim=True))


def _frozen_model(freeze):
    cfg = tiny_fpn_config()
    cfg.freeze = freeze
    return instantiate(cfg)


def test_freeze_holds_the_named_submodules():
    model = _frozen_model(["backbone", "roi_heads.mask_head"])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("backbone.", "roi_heads.mask_head."))}
    with pytest.raises(ValueError, match=r"MNC: freeze names no submodule: \['roi_heads.mask'\]"):
        _frozen_model(["roi_heads.mask"])


@pytest.mark.parametrize("config", STEP_CONFIGS)
def test_table1_steps_train_one_network_from_the_previous_step(config):
    cfg = LazyConfig.load(os.path.join(REPO, config))
    ablation, step = config.split("table1")[1][0], int(config.split("_step")[1][0])
    network = ("rpn", "mask", "category")[step - 1]
    assert cfg.model.roi_heads.num_stages == 3 and cfg.model.roi_heads.test_num_stages == 5
    assert not cfg.model.roi_heads.end_to_end
    assert cfg.model.backbone.shared == (None if ablation == "a" else "category")
    assert cfg.train.output_dir.endswith(f"table1{ablation}_step{step}_{network}")
    previous = {("a", 1): "", ("b", 1): "table1a_step3_category/model_final.pth"}.get((ablation, step))
    if previous is None:
        previous = f"table1{ablation}_step{step - 1}_{('rpn', 'mask')[step - 2]}/model_final.pth"
    assert cfg.train.init_checkpoint.endswith(previous)


@pytest.mark.parametrize("config, trained", [(STEP_CONFIGS[1], ("backbone.nets.mask.", "roi_heads.mask_head.")),
                                             (STEP_CONFIGS[3], ("proposal_generator.",))])
def test_a_table1_step_updates_only_its_network(config, trained):
    cfg = LazyConfig.load(os.path.join(REPO, config))
    heads = cfg.model.roi_heads
    heads.box_head.fc_dims = [16, 16]
    heads.box_predictor.input_shape.channels = 32
    heads.batch_size_per_image = 16
    cfg.model.proposal_generator.post_nms_topk = (20, 20)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(train_losses(model, default_batch()).values()).backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith(trained) for n in changed)
