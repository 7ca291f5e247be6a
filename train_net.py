#!/usr/bin/env python
"""
Trains and evaluates the project's LazyConfig models, detectron2-style.

One machine:     ./train_net.py --config-file configs/DefaultShapes/scnet_R_18_FPN_demo.py
                 ./train_net.py --config-file cfg.py --num-gpus 8 train.max_iter=1000
Evaluate:        ./train_net.py --config-file cfg.py --eval-only train.init_checkpoint=model_final.pth
  with TTA:      ./train_net.py --config-file cfg.py --eval-only --tta train.init_checkpoint=model_final.pth
Mixed precision: ./train_net.py --config-file cfg.py --amp   (float16 on CUDA, bfloat16 on the CPU)
Less memory:     ./train_net.py --config-file cfg.py train.activation_checkpointing=[backbone,mask_head]
Resume:          ./train_net.py --config-file cfg.py --resume        (continues train.output_dir)
Many machines:   (machine i)$ ./train_net.py --num-machines 2 --machine-rank i --dist-url tcp://host0:port ...
SLURM:           ./train_net.py --config-file cfg.py --slurm --slurm-partition gpu --slurm-nodes 2 --num-gpus 8
"""

import os

from torch.multiprocessing import ProcessExitedException

from cascades.engine.checkpoint import check_checkpoint_file
from cascades.engine.config import (check_datasets, check_training_settings, exit_on_bad_input, load_config,
                                    resolve_config_file)
from cascades.engine.output_lock import OutputDirLock
from cascades.engine.test_aug import add_test_aug
from cascades.modeling.activation_checkpointing import configured_parts
from cascades.engine.trainer import run
from detectron2.engine import default_argument_parser, launch

# A model-zoo name, so that it resolves from any working directory.
DEFAULT_CONFIG = "DefaultShapes/scnet_R_18_FPN_demo.py"


def argument_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.set_defaults(config_file=DEFAULT_CONFIG)
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision: the forward pass "
                        "under torch.autocast, float16 with a GradScaler on CUDA (detectron2's AMPTrainer), "
                        "bfloat16 on the CPU; the same as train.amp.enabled=True")
    parser.add_argument("--tta", action="store_true", help="also evaluate with test-time augmentation "
                        "(test.aug: flips and scales; the config's own or, without one, the released SCNet "
                        "TTA's scales of its test size); the same as test.aug.enabled=True")
    slurm = parser.add_argument_group("SLURM (through submitit; --num-gpus is the GPUs per node)")
    slurm.add_argument("--slurm", action="store_true", help="submit the run as a SLURM job and exit")
    slurm.add_argument("--slurm-partition", default=None, help="partition to submit to")
    slurm.add_argument("--slurm-nodes", type=int, default=1, help="number of nodes")
    slurm.add_argument("--slurm-time", type=int, default=24 * 60, help="time limit per job, in minutes")
    slurm.add_argument("--slurm-cpus-per-gpu", type=int, default=8, help="CPU cores per GPU")
    return parser


def parse_args(argv=None):
    args = argument_parser().parse_args(argv)
    if args.amp:
        args.opts = ["train.amp.enabled=True", *args.opts]
    for name in ("num_gpus", "num_machines", "slurm_nodes", "slurm_time"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    if not 0 <= args.machine_rank < args.num_machines:
        raise SystemExit(f"--machine-rank must be in [0, --num-machines={args.num_machines}); "
                         f"got {args.machine_rank}")
    return args


def main(argv=None):
    args = parse_args(argv)
    # Check the config here once, so that a bad config, override or dataset fails with a one-line error
    # before any process or job starts.
    with exit_on_bad_input("train_net.py"):
        # A path from here on: detectron2's default_setup logs the file's contents.
        args.config_file = resolve_config_file(args.config_file)
        cfg = load_config(args.config_file, args.opts)
        check_datasets(cfg)
        add_test_aug(cfg, enable=args.tta)
        if not args.eval_only:
            nodes = args.slurm_nodes if args.slurm else args.num_machines
            check_training_settings(cfg, world_size=args.num_gpus * nodes)
            configured_parts(cfg)
        output_dir = cfg.train.output_dir
        resuming = args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint"))
        if not resuming or args.eval_only:
            check_checkpoint_file(cfg.train.init_checkpoint)
        if args.machine_rank == 0:  # on the other machines, the run's own main process holds it
            OutputDirLock(output_dir).check(resume=args.resume)
    if args.slurm:
        from cascades.engine.slurm import TrainingJob, build_executor

        job = build_executor(args, output_dir).submit(TrainingJob(args))
        print(f"Submitted SLURM job {job.job_id}; its logs are in {job.paths.folder}")
        return
    try:
        launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))
    except ProcessExitedException as e:
        # A process exited by itself (SystemExit), having printed why; launch has ended the others.
        if e.signal_name:
            raise SystemExit(f"train_net.py: error: a training process was ended by {e.signal_name}") from None
        raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
    main()
