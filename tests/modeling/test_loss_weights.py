"""Every loss weight the SCNet / HTC / Cascade+semantic configs set scales exactly its own losses: the
small balloon configs' ROI heads on the synthetic batch, once as configured and once with every weight
multiplied by its own prime, so that each loss must come out multiplied by the product of the primes of
the weights that govern it (a weight applied to the wrong loss, twice, or not at all gives another
product). The SCNet paper's Eq. (3)-(4): L = sum_t alpha_t (L_cls + L_reg) + beta L_mask + gamma L_sem +
lambda L_glbctx with beta = sum_t alpha_t; HTC and the Cascade baseline weight mask stage t by alpha_t."""
import pytest
import torch

from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

ALPHA = [1.0, 0.5, 0.25]
STAGE = [2, 3, 5]  # alpha_t
BOX_CLS, BOX_REG = [7, 11, 13], [17, 19, 23]  # detectron2's FastRCNNOutputLayers.loss_weight, per stage
MASK = [29, 31, 37]  # the mask heads' loss_weight (SCNet's one head: the first)
SEMANTIC, GLOBAL_CONTEXT = 41, 43


def scale_every_weight(cfg, method):
    heads = cfg.model.roi_heads
    heads.stage_loss_weights = [a * s for a, s in zip(heads.stage_loss_weights, STAGE)]
    for predictor, cls, reg in zip(heads.box_predictors, BOX_CLS, BOX_REG):
        predictor.loss_weight = {"loss_cls": cls, "loss_box_reg": reg}
    for head, factor in zip([heads.mask_head] if method == "scnet" else heads.mask_head, MASK):
        head.loss_weight = factor
    heads.semantic_head.loss_weight *= SEMANTIC
    if method == "scnet":
        heads.global_context_head.loss_weight *= GLOBAL_CONTEXT


def expected_factors(method):
    factors = {"loss_semantic_seg": SEMANTIC}
    for t in range(3):
        factors[f"loss_cls_stage{t}"] = STAGE[t] * BOX_CLS[t]
        factors[f"loss_box_reg_stage{t}"] = STAGE[t] * BOX_REG[t]
    if method == "scnet":
        beta = sum(a * s for a, s in zip(ALPHA, STAGE)) / sum(ALPHA)  # beta = sum of the alphas
        factors["loss_mask"] = beta * MASK[0]
        factors["loss_glbctx"] = GLOBAL_CONTEXT
    else:
        factors.update({f"loss_mask_stage{t}": STAGE[t] * MASK[t] for t in range(3)})
    return factors


def losses_of(cfg, batch):
    torch.manual_seed(0)
    heads = instantiate(cfg.model.roi_heads)
    heads.train()
    features, proposals, targets = batch
    sem_seg = torch.randint(0, 2, (2, 128, 128), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)  # the RoI sampler draws at random
    with EventStorage(), torch.no_grad():
        _, losses = heads(None, features, proposals, targets, sem_seg)
    return {k: v.item() for k, v in losses.items()}


def test_configs_set_the_papers_weights(small_config):
    for method in ("scnet", "htc", "cascade_semantic"):
        heads = small_config(method).model.roi_heads
        assert list(heads.stage_loss_weights) == ALPHA
        assert heads.semantic_head.loss_weight == 0.2
    assert small_config("scnet").model.roi_heads.global_context_head.loss_weight == 3.0


@pytest.mark.parametrize("method", ["scnet", "htc", "cascade_semantic"])
def test_each_loss_weight_scales_exactly_its_losses(method, small_config, batch_maker):
    base = losses_of(small_config(method), batch_maker())
    cfg = small_config(method)
    scale_every_weight(cfg, method)
    scaled = losses_of(cfg, batch_maker())
    factors = expected_factors(method)
    assert set(scaled) == set(base) == set(factors)
    for loss, value in base.items():
        assert value != 0, loss  # a zero loss would scale by anything
        assert scaled[loss] == pytest.approx(factors[loss] * value, rel=1e-6), loss
