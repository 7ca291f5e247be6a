"""The training and evaluation behind train_net.py, in the shape of detectron2's
tools/lazyconfig_train_net.py, with the project's checkpointer and checks of the run's settings."""

import json
import logging
import os

import torch

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from .atomic import AtomicFile
from .checkpoint import Checkpointer
from .config import exit_on_bad_input, load_config

__all__ = ["do_test", "do_train", "run"]

logger = logging.getLogger("detectron2")


def _check_device(cfg):
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={cfg.train.device!r} but no CUDA device is available; "
                           "pass train.device=cpu")
    if cfg.train.amp.enabled and device.type != "cuda":
        raise ValueError("train.amp.enabled=True (--amp) needs a CUDA device; "
                           f"train.device is {cfg.train.device!r}")


def do_test(cfg, model):
    """Evaluates ``model`` on ``dataloader.test`` with ``dataloader.evaluator``; the main process also
    writes the results to ``<train.output_dir>/eval_results.json``."""
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator))
    if comm.is_main_process():
        print_csv_format(results)
        with AtomicFile(os.path.join(cfg.train.output_dir, "eval_results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def _ddp(model, cfg):
    # DDP's device_ids names GPUs; CPU (gloo) training must leave it unset.
    device_ids = [comm.get_local_rank()] if torch.device(cfg.train.device).type == "cuda" else None
    return create_ddp_model(model, device_ids=device_ids, **cfg.train.ddp)


def do_train(cfg, resume=False):
    """Trains ``cfg.model`` with hooks for timing/ETA, the LR schedule, periodic checkpoints, periodic
    evaluation and the console/JSON/TensorBoard writers. With ``resume``, continues the last checkpoint
    in ``train.output_dir`` (iteration, LR schedule and optimizer state); otherwise starts from
    ``train.init_checkpoint``."""
    model = instantiate(cfg.model)
    logger.info("Model:\n{}".format(model))
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = _ddp(model, cfg)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = Checkpointer(model, cfg.train.output_dir, trainer=trainer)
    main = comm.is_main_process()
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if main else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if main else None,
    ])

    with exit_on_bad_input("train_net.py"):
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=resume)
    # A checkpoint stores the iteration that had just finished.
    start_iter = trainer.iter + 1 if resume and checkpointer.has_checkpoint() else 0
    if start_iter >= cfg.train.max_iter:
        logger.info(f"Nothing to train: the last checkpoint is at iteration {trainer.iter}, "
                    f"train.max_iter is {cfg.train.max_iter}")
        return
    trainer.train(start_iter, cfg.train.max_iter)


def run(args):
    """The body of every training process: ``args`` are train_net.py's parsed arguments."""
    cfg = load_config(args.config_file, args.opts)
    with exit_on_bad_input("train_net.py"):
        _check_device(cfg)
    default_setup(cfg, args)
    if args.eval_only:
        model = instantiate(cfg.model).to(cfg.train.device)
        with exit_on_bad_input("train_net.py"):
            if not cfg.train.init_checkpoint:
                raise ValueError("--eval-only needs trained weights: pass train.init_checkpoint=<path or URL>")
            Checkpointer(model, strict=True).load(cfg.train.init_checkpoint)
        return do_test(cfg, model)
    do_train(cfg, resume=args.resume)
    if comm.is_main_process():
        logger.info(f"Results are in {os.path.abspath(cfg.train.output_dir)}")
