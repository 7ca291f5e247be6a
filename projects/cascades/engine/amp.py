"""Mixed-precision training on the CPU: detectron2's AMPTrainer runs float16 autocast with a GradScaler
and asserts CUDA; this trainer is its CPU counterpart, with bfloat16 autocast."""

import logging
import time

import torch

from detectron2.engine import AMPTrainer, SimpleTrainer

__all__ = ["CPUAMPTrainer", "amp_trainer_class"]

logger = logging.getLogger("detectron2")


class CPUAMPTrainer(SimpleTrainer):
    """detectron2's SimpleTrainer whose forward pass (the model and the sum of its losses) runs under
    ``torch.autocast("cpu", dtype=precision)``; backward and the optimizer step run outside it, as in
    AMPTrainer. No GradScaler: bfloat16 has float32's exponent range, so small gradients do not flush
    to zero as in float16. The trainer's state is SimpleTrainer's, so a run resumes with or without AMP."""

    def __init__(self, model, data_loader, optimizer, *, precision: torch.dtype = torch.bfloat16, **kwargs):
        super().__init__(model, data_loader, optimizer, **kwargs)
        self.precision = precision
        logger.info(f"Mixed precision on the CPU: the forward pass under {precision} autocast")

    def run_step(self):
        # SimpleTrainer.run_step, the forward under autocast.
        assert self.model.training, "[CPUAMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with torch.autocast("cpu", dtype=self.precision):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                loss_dict = {"total_loss": loss_dict}
            # Summed in float32: a bfloat16 sum keeps 8 bits of the total.
            losses = sum(loss.float() for loss in loss_dict.values())
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        losses.backward()
        self.after_backward()

        if self.async_write_metrics:
            self.concurrent_executor.submit(self._write_metrics, loss_dict, data_time, iter=self.iter)
        else:
            self._write_metrics(loss_dict, data_time)
        self.optimizer.step()


def amp_trainer_class(device) -> type:
    """The mixed-precision trainer for ``device``: detectron2's AMPTrainer (float16, GradScaler) on CUDA,
    :class:`CPUAMPTrainer` (bfloat16) on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return AMPTrainer
    if device.type == "cpu":
        return CPUAMPTrainer
    raise ValueError(f"train.amp.enabled=True (--amp) runs on CUDA (float16) or the CPU (bfloat16); "
                     f"train.device is {str(device)!r}")
