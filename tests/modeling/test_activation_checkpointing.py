"""Activation checkpointing (train.activation_checkpointing): one training step of each small model
family gives the same losses, gradients and BatchNorm statistics with and without it, while it keeps
fewer activations; bad part names get a clear error."""

import copy

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.utils.events import EventStorage

from cascades.engine.smoke import smoke_overrides
from cascades.modeling.activation_checkpointing import PARTS, apply_activation_checkpointing

from balloon_small_configs import load_balloon_small

ALL_PARTS = list(PARTS)
# the parts each family has
FAMILIES = {"scnet": ALL_PARTS, "htc": ALL_PARTS, "cascade_semantic": ALL_PARTS,
            "mnc": ["backbone", "rpn_head", "box_head", "mask_head"]}


def small_config(family, tmp_path="unused"):
    cfg = load_balloon_small(family)
    return LazyConfig.apply_overrides(cfg, smoke_overrides(cfg, str(tmp_path), size=128))


@pytest.fixture(scope="module")
def model_and_batch():
    """``model_and_batch(family)``: a seeded small model in training mode and a training batch of 2."""
    cache = {}

    def make(family):
        if family not in cache:
            cfg = small_config(family)
            cache[family] = (cfg, next(iter(instantiate(cfg.dataloader.train))))
        cfg, batch = cache[family]
        torch.manual_seed(0)
        return instantiate(cfg.model).train(), copy.deepcopy(batch)

    return make


def training_step(model, batch):
    """Losses, gradients and buffers after one forward and backward, and the bytes of the tensors that
    autograd kept outside checkpointed segments."""
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(1)  # proposal and RoI sampling
    with EventStorage(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses = model(batch)
    sum(losses.values()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return {k: v.detach() for k, v in losses.items()}, grads, buffers, sum(saved)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_same_step_with_fewer_saved_activations(family, model_and_batch):
    plain, batch = model_and_batch(family)
    checkpointed = apply_activation_checkpointing(copy.deepcopy(plain), FAMILIES[family])
    initial = {n: b.clone() for n, b in plain.named_buffers()}
    losses, grads, buffers, saved = training_step(plain, batch)
    c_losses, c_grads, c_buffers, c_saved = training_step(checkpointed, copy.deepcopy(batch))

    torch.testing.assert_close(c_losses, losses, atol=0, rtol=0)
    assert c_grads.keys() == grads.keys()
    for name in grads:  # the recomputation runs the same operations on the same inputs
        torch.testing.assert_close(c_grads[name], grads[name], atol=0, rtol=0, msg=name)
    # BatchNorm statistics were updated by the step, and once: the recomputation left no trace.
    running = [n for n in buffers if n.endswith("running_mean") and not torch.equal(buffers[n], initial[n])]
    assert bool(running) == (family != "mnc")  # MNC's small config uses GroupNorm
    for name in buffers:
        torch.testing.assert_close(c_buffers[name], buffers[name], atol=0, rtol=0, msg=name)
    assert c_saved < 0.7 * saved


def test_running_statistics_of_a_checkpointed_stage_updated_once(model_and_batch):
    plain, batch = model_and_batch("scnet")
    checkpointed = apply_activation_checkpointing(copy.deepcopy(plain), ["backbone"])
    stage = "backbone.bottom_up.res3.0.conv1.norm"
    initial = plain.get_submodule(stage).running_mean.clone()
    for model in (plain, checkpointed):
        training_step(model, copy.deepcopy(batch))
    once = plain.get_submodule(stage).running_mean
    assert not torch.equal(once, initial)
    torch.testing.assert_close(checkpointed.get_submodule(stage).running_mean, once, atol=0, rtol=0)
    assert checkpointed.get_submodule(stage).num_batches_tracked == 1


def test_names_state_and_types_kept(model_and_batch):
    plain, _ = model_and_batch("htc")
    checkpointed = apply_activation_checkpointing(copy.deepcopy(plain), ALL_PARTS)
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    assert [n for n, _ in checkpointed.named_parameters()] == [n for n, _ in plain.named_parameters()]
    heads = checkpointed.roi_heads.mask_head
    assert all(isinstance(h, type(p)) for h, p in zip(heads, plain.roi_heads.mask_head))
    assert type(heads[0]).__name__ == "CheckpointedHTCMaskHead"
    # The backbone's segments are its stages: only their inputs are kept, not every block's.
    bottom_up, plain_bottom_up = checkpointed.backbone.bottom_up, plain.backbone.bottom_up
    assert type(bottom_up.res3).__name__ == "CheckpointedSequential"
    assert type(bottom_up.res3[0]) is type(plain_bottom_up.res3[0])
    assert type(checkpointed.proposal_generator.rpn_head).__name__ == "CheckpointedStandardRPNHead"
    # Applying twice changes nothing.
    assert type(apply_activation_checkpointing(checkpointed, ["mask_head"]).roi_heads.mask_head[0]) is type(heads[0])


def test_inference_unchanged(model_and_batch):
    plain, batch = model_and_batch("scnet")
    checkpointed = apply_activation_checkpointing(copy.deepcopy(plain), ALL_PARTS)
    with torch.no_grad():
        expected, actual = (m.eval()([{"image": batch[0]["image"]}])[0]["instances"] for m in (plain, checkpointed))
    torch.testing.assert_close(actual.pred_masks, expected.pred_masks, atol=0, rtol=0)


@pytest.mark.parametrize("family, parts, match", [
    ("scnet", ["backbone", "roi_head"], "unknown part 'roi_head'; the parts are backbone, rpn_head, box_head, "
                                        "mask_head, semantic_head"),
    ("scnet", "backbone", "must be a list of part names"),
    ("mnc", ["semantic_head"], "MNC has no roi_heads.semantic_head to checkpoint"),
])
def test_bad_parts(family, parts, match):
    model = instantiate(small_config(family).model)
    with pytest.raises(ValueError, match=match):
        apply_activation_checkpointing(model, parts)


def test_backbone_must_be_a_resnet_and_the_rpn_head_there():
    model = nn.Module()
    model.backbone = nn.Sequential(nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="stages of a ResNet .* this model's is a Sequential"):
        apply_activation_checkpointing(model, ["backbone"])
    with pytest.raises(ValueError, match="Module has no proposal_generator.rpn_head to checkpoint"):
        apply_activation_checkpointing(model, ["rpn_head"])
