"""LR multipliers whose warm-up (in iterations) and steps (fractions of the run) follow train.max_iter,
also when it is overridden on the command line (see cascades.engine.schedules)."""

from detectron2.config import LazyCall as L

from cascades.engine.schedules import warmup_step_schedule


def step_schedule(warmup_iter, steps=(0.75, 0.9)):
    """Linear warm-up over ``warmup_iter`` iterations, then x0.1 at each fraction of train.max_iter in ``steps``."""
    return L(warmup_step_schedule)(max_iter="${train.max_iter}", warmup_iter=warmup_iter, steps=steps)
