"""Mixed precision (--amp, train.amp.enabled=True) on the CPU: a few bfloat16 training steps of each small
model family stay finite and really run under autocast; the trainer for each device."""

import math

import pytest
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer
from detectron2.utils.events import EventStorage

from cascades.engine.amp import CPUAMPTrainer, amp_trainer_class
from cascades.engine.smoke import smoke_overrides

from balloon_small_configs import load_balloon_small

STEPS = 3


@pytest.mark.parametrize("family", ["cascade_semantic", "htc", "mnc", "scnet"])
def test_bfloat16_steps_stay_finite(family, tmp_path):
    cfg = load_balloon_small(family)
    cfg = LazyConfig.apply_overrides(cfg, smoke_overrides(cfg, str(tmp_path), size=128))
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    cfg.optimizer.params.model = model
    trainer = CPUAMPTrainer(model, instantiate(cfg.dataloader.train), instantiate(cfg.optimizer))
    feature_dtypes = []
    model.backbone.register_forward_hook(lambda m, i, out: feature_dtypes.append({v.dtype for v in out.values()}))
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}

    with EventStorage() as storage:
        for trainer.iter in range(STEPS):
            storage.iter = trainer.iter
            trainer.run_step()  # detectron2 raises FloatingPointError on non-finite losses
            storage.step()
    history = storage.histories()

    assert feature_dtypes == [{torch.bfloat16}] * STEPS  # the forward ran under bfloat16 autocast
    losses = [v for v, _ in history["total_loss"].values()]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses)
    assert {k for k in history if k.startswith("loss_")}  # every loss term logged, finite by the check above
    for name, p in model.named_parameters():  # float32 master weights, updated
        assert p.dtype == torch.float32 and torch.isfinite(p).all(), name
    assert any(not torch.equal(p, weights[n]) for n, p in model.named_parameters())


def test_trainer_per_device():
    assert amp_trainer_class("cuda") is AMPTrainer
    assert amp_trainer_class("cpu") is CPUAMPTrainer
    with pytest.raises(ValueError, match="runs on CUDA .float16. or the CPU .bfloat16.; train.device is 'meta'"):
        amp_trainer_class("meta")
