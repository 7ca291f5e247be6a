"""Learning-rate multipliers that follow the run's ``train.max_iter``, whatever it is overridden to.

A schedule built from a config's own ``max_iter`` at load time keeps its warm-up and steps where they
were when ``train.max_iter`` is overridden (e.g. ``train.max_iter=30`` would reach full LR at
iteration 2 and never decay). Configs therefore pass ``max_iter="${train.max_iter}"``, resolved when the
schedule is instantiated, with the warm-up in iterations and the steps as fractions of the run.
"""

from typing import Sequence

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.solver import WarmupParamScheduler

__all__ = ["warmup_step_schedule"]


def warmup_step_schedule(
    max_iter: int, warmup_iter: int, steps: Sequence[float] = (0.75, 0.9), warmup_factor: float = 0.001
) -> WarmupParamScheduler:
    """
    Linear warm-up from ``warmup_factor`` over the first ``warmup_iter`` iterations (capped at the run),
    then the LR multiplied by 0.1 at each fraction of ``max_iter`` in ``steps``. A step that falls on
    iteration 0 or on the one before it in a very short run is dropped.
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"train.max_iter must be a positive integer; got {max_iter!r}")
    if isinstance(warmup_iter, bool) or not isinstance(warmup_iter, int) or warmup_iter < 0:
        raise ValueError(f"warmup_iter must be a non-negative integer; got {warmup_iter!r}")
    steps = list(steps)
    if any(not 0 < s < 1 for s in steps) or steps != sorted(set(steps)):
        raise ValueError(f"steps must be increasing fractions of the run in (0, 1); got {steps}")
    milestones = []
    for s in steps:
        m = int(max_iter * s)
        if m > (milestones[-1] if milestones else 0):
            milestones.append(m)
    return WarmupParamScheduler(
        MultiStepParamScheduler(
            values=[0.1**i for i in range(len(milestones) + 1)], milestones=milestones, num_updates=max_iter
        ),
        warmup_factor=warmup_factor,
        warmup_length=min(1.0, warmup_iter / max_iter),
        warmup_method="linear",
    )
