"""An optimizer that clips gradients, for LazyConfig's ``optimizer`` (yacs has SOLVER.CLIP_GRADIENTS)."""
import torch

__all__ = ["ClippedSGD"]


class ClippedSGD(torch.optim.SGD):
    """:class:`torch.optim.SGD` that first scales the gradients of all its parameters together down to
    a total L2 norm of at most ``max_grad_norm`` (detectron2's CLIP_TYPE "full_model"). Being the
    optimizer, it works under any trainer, ours or detectron2's; under AMP, GradScaler unscales the
    gradients before calling ``step``."""

    def __init__(self, params, *, max_grad_norm: float, **kwargs):
        if not max_grad_norm > 0:
            raise ValueError(f"ClippedSGD: max_grad_norm must be > 0, got {max_grad_norm!r}")
        super().__init__(params, **kwargs)
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure=None):
        grads = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(grads, self.max_grad_norm)
        return super().step(closure)
