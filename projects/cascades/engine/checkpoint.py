"""DetectionCheckpointer with atomic saves, clear errors for a checkpoint that cannot be read or is of
another model, and resuming that falls back past an unreadable checkpoint."""

import contextlib
import os
import re
import zipfile

from detectron2.checkpoint import DetectionCheckpointer

from ..checkpoint import CONVERSION_KEY, fit_to_model, refuse_mmdet_layout
from .atomic import AtomicPathManager
from .failures import TrainingDiverged, non_finite_weights

__all__ = ["Checkpointer", "CheckpointMismatchError", "CheckpointReadError", "check_checkpoint_file"]

# PeriodicCheckpointer's names, model_<iteration:07d>.pth
_PERIODIC = re.compile(r"model_(\d{7})\.pth")


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model (another architecture or number of classes)."""


class CheckpointReadError(ValueError):
    """The checkpoint path is a folder, or the file cannot be read (empty, truncated, not a checkpoint)."""


def _check_local_path(path):
    if os.path.isdir(path):
        last = os.path.join(path, "last_checkpoint")
        hint = ""
        if os.path.isfile(last):
            with open(last) as f:
                hint = f" (its last checkpoint is {os.path.join(path, f.read().strip())})"
        raise CheckpointReadError(f"Checkpoint {path!r} is a folder, not a checkpoint file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file {path!r} does not exist")


def check_checkpoint_file(path):
    """Fails now, naming the file, on a local checkpoint that is missing, a folder, empty, or (.pth/.pt)
    neither a zip archive with its directory intact, as torch.save writes, nor a pickle, as older torch
    versions wrote. Cheap: it reads a few bytes and the zip directory, not the weights. URLs and
    detectron2:// names are left to loading."""
    if not path or "://" in path:
        return
    _check_local_path(path)
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointReadError(f"Checkpoint {path!r} is an empty file")
    if path.endswith((".pth", ".pt")) and not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            if f.read(1) != b"\x80":  # the pickle protocol marker
                raise CheckpointReadError(f"Checkpoint {path!r} ({size} bytes) is truncated or not a checkpoint: "
                                          "neither a complete zip archive, as torch.save writes, nor a pickle")


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

    Converted mmdetection checkpoints (``mmdet://...``) are never loaded leniently: every tensor must
    fit, except that for training (not ``strict``) a different class count leaves out the
    class-specific layers with one warning (``cascades.checkpoint.fit_to_model``). An unconverted
    mmdetection file is refused with the ``mmdet://`` path that converts it.
    """

    def __init__(self, model, save_dir="", *, strict=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = AtomicPathManager()
        self.strict = strict
        self._loading = None

    def load(self, path, *args, **kwargs):
        if path and "://" not in path:
            _check_local_path(path)
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = None
            # DetectionCheckpointer resets it only when loading succeeds, and asserts it is reset.
            self._parsed_url_during_load = None

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except Exception as e:  # torch.load and pickle raise many types for a file they cannot parse
            size = os.path.getsize(filename)
            what = "an empty file" if size == 0 else f"{size} bytes: truncated, damaged or not a checkpoint"
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise CheckpointReadError(f"Checkpoint {filename!r} cannot be read ({what}; "
                                      f"{type(e).__name__}: {reason})") from e

    def save(self, name, **kwargs):
        # A checkpoint of non-finite weights would replace the last good one as the one to resume.
        if self.save_dir and self.save_to_disk:
            weights = non_finite_weights(self.model)
            if weights:
                raise TrainingDiverged(kwargs.get("iteration", "?"), f"{weights}; {name}.pth was not saved")
        super().save(name, **kwargs)

    def resume_or_load(self, path, *, resume=True):
        if not (resume and self.has_checkpoint()):
            return super().resume_or_load(path, resume=resume)
        # Resuming continues this very model: every tensor must match.
        with self._strictly():
            return self._resume()

    def _resume(self):
        """Loads the last checkpoint, or, when it cannot be read (a damaged disk or copy), the latest
        earlier one that can, saying which it used."""
        latest = os.path.basename(self.get_checkpoint_file())
        earlier = sorted((f for f in os.listdir(self.save_dir) if _PERIODIC.fullmatch(f)), reverse=True)
        if _PERIODIC.fullmatch(latest):
            earlier = [f for f in earlier if f < latest]
        unreadable = [] if latest else [f"{os.path.join(self.save_dir, 'last_checkpoint')} names no checkpoint"]
        for candidate in [os.path.join(self.save_dir, f) for f in ([latest] if latest else []) + earlier]:
            try:
                loaded = self.load(candidate)
            except (CheckpointReadError, FileNotFoundError) as e:
                unreadable.append(str(e))
                continue
            if unreadable:
                self.logger.warning(f"Resuming from {candidate}, the latest readable checkpoint: "
                                    + "; ".join(unreadable))
            return loaded
        raise CheckpointReadError(f"No checkpoint in {self.save_dir} can be read to resume: " + "; ".join(unreadable))

    @contextlib.contextmanager
    def _strictly(self):
        strict, self.strict = self.strict, True
        try:
            yield
        finally:
            self.strict = strict

    def _load_model(self, checkpoint):
        source, left_out = self._loading or "the checkpoint", set()
        if CONVERSION_KEY in checkpoint:
            converted = checkpoint["model"]
            checkpoint["model"] = fit_to_model(converted, self.model.state_dict(), fine_tuning=not self.strict,
                                               source=source)
            left_out = set(converted) - set(checkpoint["model"])
        else:
            refuse_mmdet_layout(checkpoint["model"], source)
        incompatible = super()._load_model(checkpoint)
        if left_out:  # fit_to_model's warning named them; fvcore would list them again
            incompatible = incompatible._replace(
                missing_keys=[k for k in incompatible.missing_keys if k not in left_out])
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
