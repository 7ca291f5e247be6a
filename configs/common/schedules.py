"""LR multipliers for short schedules (detectron2's common/coco_schedule.py covers the COCO 1x/3x)."""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler


def step_schedule(max_iter, warmup_iter, steps=(0.75, 0.9)):
    """Linear warm-up over ``warmup_iter`` iterations, then x0.1 at each fraction in ``steps``."""
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**i for i in range(len(steps) + 1)],
            milestones=[int(max_iter * s) for s in steps],
            num_updates=max_iter,
        ),
        warmup_length=warmup_iter / max_iter,
        warmup_method="linear",
        warmup_factor=0.001,
    )
