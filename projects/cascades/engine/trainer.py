"""The training and evaluation behind train_net.py, in the shape of detectron2's
tools/lazyconfig_train_net.py, with the project's checkpointer, checks of the run's settings, one run
per output folder, and runs that end with one message when they cannot go on."""

import contextlib
import json
import logging
import numbers
import os

import torch
from omegaconf import OmegaConf

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import TensorboardXWriter

from ..modeling.activation_checkpointing import apply_activation_checkpointing, configured_parts

from .amp import CPUAMPTrainer, amp_trainer_class
from .atomic import AtomicFile, remove_stale_partial_files
from .checkpoint import Checkpointer
from .config import exit_on_bad_input, load_config
from .failures import DivergenceChecks, MapperNamingTheImage, TrainingDiverged, TrainingFailure
from .output_lock import OutputDirInUse, OutputDirLock
from .run_report import report_finished_run
from .test_aug import add_test_aug, tta_model

__all__ = ["do_test", "do_train", "run"]

logger = logging.getLogger("detectron2")


def _check_device(cfg):
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={cfg.train.device!r} but no CUDA device is available; "
                           "pass train.device=cpu")
    if cfg.train.amp.enabled:
        amp_trainer_class(device)


def do_test(cfg, model):
    """Evaluates ``model`` on ``dataloader.test`` with ``dataloader.evaluator``, and when
    ``test.aug.enabled`` also with test-time augmentation (its results' keys suffixed ``_TTA``, as
    detectron2's train_net names them); the main process also writes the results to
    ``<train.output_dir>/eval_results.json``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    models = {"": model}
    if OmegaConf.select(cfg, "test.aug.enabled", default=False):
        models["_TTA"] = tta_model(cfg, model)
    results = {}
    for suffix, evaluated in models.items():
        res = inference_on_dataset(evaluated, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
        if comm.is_main_process():
            print_csv_format(res)
        results.update({k + suffix: v for k, v in res.items()})
    if comm.is_main_process():
        with AtomicFile(os.path.join(cfg.train.output_dir, "eval_results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def _ddp(model, cfg):
    # DDP's device_ids names GPUs; CPU (gloo) training must leave it unset.
    device_ids = [comm.get_local_rank()] if torch.device(cfg.train.device).type == "cuda" else None
    return create_ddp_model(model, device_ids=device_ids, **cfg.train.ddp)


class _EvalHook(hooks.EvalHook):
    """detectron2's EvalHook, whose final evaluation also runs after a failure in the last iteration (it
    tests ``iter + 1 >= max_iter``), e.g. of a diverged model, over the eval_results.json of a good one:
    evaluate only a run that finished (the trainer's ``iter`` then equals ``max_iter``)."""

    def after_train(self):
        if self.trainer.iter < self.trainer.max_iter:
            self._eval_after_train = False
        super().after_train()


class _SimpleTrainer(DivergenceChecks, SimpleTrainer):
    pass


class _AMPTrainer(DivergenceChecks, AMPTrainer):
    pass


class _CPUAMPTrainer(DivergenceChecks, CPUAMPTrainer):
    pass


def _trainer_class(cfg):
    if not cfg.train.amp.enabled:
        return _SimpleTrainer
    return {AMPTrainer: _AMPTrainer, CPUAMPTrainer: _CPUAMPTrainer}[amp_trainer_class(cfg.train.device)]


def _train_loader(cfg):
    """``dataloader.train``, its mapper wrapped so that an unreadable image is named. The config itself
    is left as it is: other nodes interpolate the mapper's settings (the test mapper's image_format)."""
    loader = cfg.dataloader.train
    if OmegaConf.select(loader, "mapper", default=None) is None:
        return instantiate(loader)
    return instantiate({k: MapperNamingTheImage(instantiate(v)) if k == "mapper" else v for k, v in loader.items()})


def _optimizer_settings(optimizer):
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def _use_configured_settings(optimizer, configured):
    """torch's load_state_dict restores the checkpoint's hyperparameters over the config's, so that a
    resumed run would ignore e.g. ``optimizer.lr=<lower>`` after a divergence: put the config's back
    (the LR as the schedule's base, ``initial_lr``)."""
    changed = {}
    for group, settings in zip(optimizer.param_groups, configured):
        for key, value in settings.items():
            target = "initial_lr" if key == "lr" and "initial_lr" in group else key
            if not torch.is_tensor(value) and group.get(target) != value:
                changed.setdefault(key, f"{key} {group.get(target)} -> {value}")
            group[target] = value
    if changed:
        logger.info("Resuming with the config's optimizer settings instead of the checkpoint's: "
                    + ", ".join(changed.values()))


def _drop_metrics_after(output_dir, iteration):
    """A killed run logged the iterations after its last checkpoint, which the resumed run logs again:
    drop them (and a line the kill cut short) from metrics.json, atomically."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                dropped += 1
                continue
            if isinstance(record, dict) and record.get("iteration", -1) > iteration:
                dropped += 1
            else:
                kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        with AtomicFile(path, "w") as f:
            f.writelines(kept)
        logger.info(f"Dropped {dropped} records of iterations after {iteration} from {path}: the resumed run "
                    "logs them again")


def _writers(cfg, resumed_at):
    """detectron2's writers; a resumed run's TensorBoard writer hides the events after its checkpoint."""
    writers = default_writers(cfg.train.output_dir, cfg.train.max_iter)
    if resumed_at is None:
        return writers
    return [TensorboardXWriter(cfg.train.output_dir, purge_step=resumed_at) if isinstance(w, TensorboardXWriter)
            else w for w in writers]


def do_train(cfg, resume=False):
    """Trains ``cfg.model`` with hooks for timing/ETA, the LR schedule, periodic checkpoints, periodic
    evaluation and the console/JSON/TensorBoard writers. With ``resume``, continues the last readable
    checkpoint in ``train.output_dir`` (iteration, LR schedule and optimizer state; the config's optimizer
    settings, e.g. a lower LR, apply); otherwise starts from ``train.init_checkpoint``. A run that
    diverges or meets an unreadable image raises :class:`TrainingFailure`."""
    model = instantiate(cfg.model)
    with exit_on_bad_input("train_net.py"):
        apply_activation_checkpointing(model, configured_parts(cfg))
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    configured = _optimizer_settings(optimizer)
    train_loader = _train_loader(cfg)

    model = _ddp(model, cfg)
    trainer = _trainer_class(cfg)(model, train_loader, optimizer)
    checkpointer = Checkpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        _EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
    ])

    with exit_on_bad_input("train_net.py"):
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    resumed = resume and checkpointer.has_checkpoint()
    if resumed:
        _use_configured_settings(optimizer, configured)
    # A checkpoint stores the iteration that had just finished.
    start_iter = trainer.iter + 1 if resumed else 0
    if start_iter >= cfg.train.max_iter:
        logger.info(f"Nothing to train: the last checkpoint is at iteration {trainer.iter}, "
                    f"train.max_iter is {cfg.train.max_iter}")
        return
    if main:
        # Writers open metrics.json for appending: trim it before.
        if resumed:
            _drop_metrics_after(cfg.train.output_dir, trainer.iter)
        trainer.register_hooks([hooks.PeriodicWriter(_writers(cfg, start_iter if resumed else None),
                                                     period=cfg.train.log_period)])
    trainer.train(start_iter, cfg.train.max_iter)


def _after_divergence(cfg):
    """What a diverged run leaves to continue from, and how."""
    lr = cfg.optimizer.get("lr")
    lower = f"optimizer.lr={lr / 4:g}" if isinstance(lr, numbers.Real) else "a lower optimizer.lr=..."
    last = os.path.join(cfg.train.output_dir, "last_checkpoint")
    if os.path.isfile(last):
        with open(last) as f:
            name = os.path.join(cfg.train.output_dir, f.read().strip())
        return f"The last checkpoint, {name}, is intact: continue it with a lower learning rate, e.g. --resume {lower}"
    return f"No checkpoint was saved before; train again with a lower learning rate, e.g. {lower}"


@contextlib.contextmanager
def _holding_output_dir(output_dir, resume):
    """The main process holds the output folder's lock for the run; every process ends (the main one
    with the reason) when another run holds it. Yields what was cleaned up or taken over, to log."""
    lock, refusal, notes = None, None, []
    if comm.is_main_process():
        try:
            lock = OutputDirLock(output_dir).acquire(resume=resume)
        except OutputDirInUse as e:
            refusal = str(e)
        else:
            notes += [lock.took_over] if lock.took_over else []
            stale = remove_stale_partial_files(output_dir)
            notes += [f"removed what killed runs left half-written in {output_dir}: {', '.join(stale)}"] if stale else []
    if comm.get_world_size() > 1:
        refusal = comm.all_gather(refusal)[0]
    if refusal:
        raise SystemExit(f"train_net.py: error: {refusal}" if comm.is_main_process() else 1)
    try:
        yield notes
    finally:
        if lock is not None:
            lock.release()


def run(args):
    """The body of every training process: ``args`` are train_net.py's parsed arguments."""
    cfg = load_config(args.config_file, args.opts)
    with exit_on_bad_input("train_net.py"):
        _check_device(cfg)
        add_test_aug(cfg, enable=args.tta)
    with _holding_output_dir(cfg.train.output_dir, args.resume) as notes:
        default_setup(cfg, args)
        for note in notes:
            logger.warning(note)
        if args.eval_only:
            model = instantiate(cfg.model).to(cfg.train.device)
            with exit_on_bad_input("train_net.py"):
                if not cfg.train.init_checkpoint:
                    raise ValueError("--eval-only needs trained weights: pass train.init_checkpoint=<path or URL>")
                Checkpointer(model, strict=True).load(cfg.train.init_checkpoint)
            return do_test(cfg, model)
        try:
            do_train(cfg, resume=args.resume)
        except Exception as e:
            # An error raised while the trainer handled a failure (its final hooks) hides it.
            failure = next((x for x in _context_chain(e) if isinstance(x, TrainingFailure)), None)
            if failure is None:
                raise
            advice = f" {_after_divergence(cfg)}" if isinstance(failure, TrainingDiverged) else ""
            raise SystemExit(f"train_net.py: error: {str(failure).rstrip('.!')}.{advice}") from None
        if comm.is_main_process():
            report_finished_run(cfg)
            logger.info(f"Results are in {os.path.abspath(cfg.train.output_dir)}")


def _context_chain(error):
    while error is not None:
        yield error
        error = error.__context__
