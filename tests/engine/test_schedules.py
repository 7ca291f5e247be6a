"""LR schedules follow the train.max_iter of the run, also when it is overridden."""
import pytest

from cascades.engine.config import load_config
from cascades.engine.schedules import warmup_step_schedule
from detectron2.config import instantiate


def lr_at(schedule, iteration, max_iter):
    return schedule(iteration / max_iter)


def test_warmup_in_iterations_and_steps_as_fractions():
    schedule = warmup_step_schedule(max_iter=1000, warmup_iter=100, steps=(0.5, 0.8))
    assert lr_at(schedule, 0, 1000) == pytest.approx(0.001)
    assert lr_at(schedule, 50, 1000) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_at(schedule, 100, 1000) == pytest.approx(1.0)
    assert lr_at(schedule, 499, 1000) == pytest.approx(1.0)
    assert lr_at(schedule, 500, 1000) == pytest.approx(0.1)
    assert lr_at(schedule, 800, 1000) == pytest.approx(0.01)


@pytest.mark.parametrize("config, warmup", [("configs/Balloon/scnet_R_18_FPN_small.py", 100),
                                            ("configs/COCO-InstanceSegmentation/mnc_R_50_FPN_1x.py", 1000)])
def test_overridden_max_iter_moves_warmup_end_and_steps(config, warmup):
    """README's `train.max_iter=...` example: the warm-up keeps its length in iterations (capped at the
    run) and the steps stay at their fractions of the shorter run."""
    cfg = load_config(config)
    full = instantiate(cfg.lr_multiplier)
    fractions = [m / cfg.train.max_iter for m in full._schedulers[1]._milestones]
    assert full._lengths[0] * cfg.train.max_iter == pytest.approx(warmup)
    short = load_config(config, ["train.max_iter=300"])
    schedule = instantiate(short.lr_multiplier)
    assert schedule._schedulers[1]._num_updates == 300
    assert schedule._schedulers[1]._milestones == [int(300 * f + 1e-9) for f in fractions]
    assert schedule._lengths[0] * 300 == pytest.approx(min(warmup, 300))
    assert lr_at(schedule, 2, 300) < 0.05  # a warm-up squeezed to 5% of 300 iterations gives 0.13


def test_tiny_runs_drop_steps_that_do_not_fit():
    schedule = warmup_step_schedule(max_iter=2, warmup_iter=100)
    assert schedule._schedulers[1]._milestones == [1]
    assert warmup_step_schedule(max_iter=1, warmup_iter=0)._schedulers[1]._milestones == []


@pytest.mark.parametrize("kwargs, message", [
    ({"max_iter": "abc", "warmup_iter": 1}, "train.max_iter must be a positive integer"),
    ({"max_iter": 0, "warmup_iter": 1}, "train.max_iter must be a positive integer"),
    ({"max_iter": 10, "warmup_iter": -1}, "warmup_iter must be a non-negative integer"),
    ({"max_iter": 10, "warmup_iter": 1, "steps": (0.9, 0.5)}, "steps must be increasing fractions"),
    ({"max_iter": 10, "warmup_iter": 1, "steps": (1.5,)}, "steps must be increasing fractions"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        warmup_step_schedule(**kwargs)
