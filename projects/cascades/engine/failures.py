"""How a training run ends when it cannot go on: with one message saying what went wrong (the iteration
and the losses that went non-finite, the training image that cannot be read) instead of a traceback."""

import contextlib
import logging
import math

import torch

from detectron2.engine import train_loop

__all__ = ["DivergenceChecks", "MapperNamingTheImage", "TrainingDiverged", "TrainingFailure", "TrainingImageError"]

# detectron2's Boxes.clip asserts this on non-finite boxes, deep inside the model's forward.
BOX_CLIP_ASSERTION = "Box tensor contains infinite or NaN!"


class TrainingFailure(RuntimeError):
    """Ends a training run; its message says all (train_net.py prints it as one line)."""


class TrainingDiverged(TrainingFailure):
    def __init__(self, iteration, what):
        super().__init__(f"training diverged at iteration {iteration}: {what}")
        self.iteration = iteration


class TrainingImageError(TrainingFailure):
    def __init__(self, message):
        # The DataLoader re-raises a worker's exception in the main process as the same type, with the
        # worker's traceback as its message; the traceback's last line is "<type>: <our message>".
        if message.startswith("Caught ") and "Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(f"{type(self).__name__}: ", 1)[-1]
        super().__init__(message)


class MapperNamingTheImage:
    """Wraps a dataset mapper so that an image it cannot read ends the run with the image's name (PIL's
    own error, e.g. "image file is truncated", does not say which file), and any other error of the
    mapper carries the name as a note on its traceback."""

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, dataset_dict):
        try:
            return self.mapper(dataset_dict)
        except (OSError, SyntaxError) as e:  # what PIL raises for missing, truncated or undecodable files
            raise TrainingImageError(f"training image {dataset_dict.get('file_name')!r} cannot be read: "
                                     f"{type(e).__name__}: {e}") from e
        except Exception as e:
            e.add_note(f"(while mapping training image {dataset_dict.get('file_name')!r})")
            raise


def non_finite_weights(model):
    """'' when every parameter and buffer of ``model`` is finite, else which modules hold non-finite ones.
    One device synchronization: for a failure or a checkpoint, never per iteration."""
    model = getattr(model, "module", model)  # DistributedDataParallel's
    tensors = [(name, t) for name, t in model.state_dict().items() if t.is_floating_point() and t.numel()]
    if not tensors:
        return ""
    finite = torch.stack([t.isfinite().all() for _, t in tensors]).cpu()
    if finite.all():
        return ""
    bad = [name for (name, _), ok in zip(tensors, finite) if not ok]
    modules = list(dict.fromkeys(name.rsplit(".", 1)[0] for name in bad))
    more = f" and {len(modules) - 3} more" if len(modules) > 3 else ""
    count = "1 weight tensor is" if len(bad) == 1 else f"{len(bad)} weight tensors are"
    return f"{count} non-finite, in {', '.join(modules[:3])}{more}"


def _divergence(error, model):
    """What went non-finite, when ``error`` (raised by a training step) is a sign of divergence."""
    weights = non_finite_weights(model)
    if isinstance(error, FloatingPointError):  # detectron2's RPN check, our roi_warp's box check
        what = str(error)
    elif isinstance(error, AssertionError) and str(error) == BOX_CLIP_ASSERTION:
        what = f"non-finite predicted boxes (detectron2's Boxes.clip: {BOX_CLIP_ASSERTION})"
    elif weights:
        what = f"{type(error).__name__}: {error}"
    else:
        return None
    return f"{what}; {weights}" if weights else what


class DivergenceChecks:
    """A mixin for detectron2's SimpleTrainer and AMPTrainer: a step that diverges raises
    :class:`TrainingDiverged` naming the iteration and what went non-finite. Losses are checked where
    detectron2 checks them (``_write_metrics``, which reads them to the host anyway): no extra device
    synchronization per iteration; the weights are inspected only after a failure."""

    def run_step(self):
        try:
            super().run_step()
        except TrainingFailure:
            raise
        except Exception as e:
            what = _divergence(e, self.model)
            if what is None:
                raise
            raise TrainingDiverged(self.iter, what) from e

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        try:
            super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)
        except FloatingPointError:
            # Raised on the main process for the losses averaged over all processes.
            losses = {k: v.detach().float().mean().item() for k, v in loss_dict.items()}
            bad = ", ".join(f"{k}={v}" for k, v in losses.items() if not math.isfinite(v))
            what = f"non-finite losses {bad}" if bad else "non-finite losses on another process"
            raise TrainingDiverged(self.iter if iter is None else iter, what) from None

    def train(self, start_iter, max_iter):
        # detectron2 logs the traceback of any exception that ends training; a TrainingFailure (and the
        # FloatingPointError it replaces) says all in its message.
        with _without_tracebacks_of(logging.getLogger(train_loop.__name__), (TrainingFailure, FloatingPointError)):
            super().train(start_iter, max_iter)


@contextlib.contextmanager
def _without_tracebacks_of(logger, types):
    def keep(record):
        return not (record.exc_info and isinstance(record.exc_info[1], types))

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
