"""DetectionCheckpointer with atomic saves and a clear error for a checkpoint of another model."""

import contextlib
import os

from detectron2.checkpoint import DetectionCheckpointer

from .atomic import AtomicPathManager

__all__ = ["Checkpointer", "CheckpointMismatchError"]


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model (another architecture or number of classes)."""


class Checkpointer(DetectionCheckpointer):
    """
    Same files and API as :class:`DetectionCheckpointer` (model-zoo ``.pkl``, ``detectron2://`` names,
    URLs, local ``.pth``), with two differences:

    1. Saves are atomic: the checkpoint and ``last_checkpoint`` are written to temporary files and
       renamed into place, so a kill mid-save leaves the previous checkpoint usable.
    2. Loading weights that do not fit the model raises :class:`CheckpointMismatchError` instead of
       logging a warning: always when no tensor at all fits (a checkpoint of another model), and for
       any missing or mis-shaped tensor when ``strict`` (inference) or when resuming a training run.
       Loading ``train.init_checkpoint`` for training stays lenient, as in detectron2, so that a
       backbone-only or different-class-count checkpoint initialises what it can.
    """

    def __init__(self, model, save_dir="", *, strict=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = AtomicPathManager()
        self.strict = strict
        self._loading = None

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"Checkpoint file {path!r} does not exist")
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = None

    def resume_or_load(self, path, *, resume=True):
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        # Resuming continues this very model: every tensor must match.
        with self._strictly():
            return super().resume_or_load(path, resume=resume)

    @contextlib.contextmanager
    def _strictly(self):
        strict, self.strict = self.strict, True
        try:
            yield
        finally:
            self.strict = strict

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        # fvcore fills in BatchNorm's step counters itself; they say nothing about fitting.
        model_keys = {k for k in self.model.state_dict() if not k.endswith("num_batches_tracked")}
        # fvcore drops mis-shaped tensors before loading, so they are also among the missing keys.
        missing = set(incompatible.missing_keys) & model_keys
        shapes = incompatible.incorrect_shapes
        if len(missing) == len(model_keys) or (self.strict and (missing or shapes)):
            details = [f"{len(missing)} of the model's {len(model_keys)} tensors are missing or mis-shaped"]
            details += [f"  {k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in shapes[:5]]
            details += [f"  missing: {k}" for k in sorted(missing - {k for k, _, _ in shapes})[:5]]
            raise CheckpointMismatchError(
                f"Checkpoint {self._loading!r} does not fit this model (was it trained with another "
                f"config?):\n" + "\n".join(details)
            )
        return incompatible
