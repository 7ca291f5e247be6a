#!/usr/bin/env python
"""Training memory and step time of SCNet R-50-FPN with activation checkpointing and with mixed precision,
against plain float32 training measured in the same run.

  python tools/benchmark_memory.py [--device cpu|cuda] [--size 800] [--steps 3] [--threads 1]

The model is benchmark_cascades.py's SCNet (configs/common/models/scnet_fpn.py, R-50-FPN, random init,
80 classes), trained on two ``--size`` x ``--size`` images with 6 objects each by the trainer that
train_net.py uses for the setting (detectron2's SimpleTrainer; with AMP, our CPUAMPTrainer on the CPU,
bfloat16, or detectron2's AMPTrainer on CUDA, float16). Each setting runs in a fresh process: one
untimed step, then ``--steps`` timed steps (median and range reported). Peak memory: on the CPU the
process's peak resident memory (ru_maxrss) above its level after building the model and the inputs;
on CUDA ``max_memory_allocated`` above the memory allocated before training.
"""
import argparse
import itertools
import json
import resource
import statistics
import sys
import time

import torch

from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils.events import EventStorage

from benchmark_cascades import build_model, make_inputs, rss_mb
from benchmark_child import measure_in_child
from benchmark_timing import synchronize
from cascades.engine.amp import amp_trainer_class
from cascades.modeling.activation_checkpointing import PARTS, apply_activation_checkpointing

ALL_PARTS = list(PARTS)
# name: (activation checkpointing parts, AMP)
SETTINGS = {
    "float32 (baseline)": ([], False),
    "float32 + checkpointing": (ALL_PARTS, False),
    "AMP": ([], True),
}


def measure(setting, args):
    parts, amp = SETTINGS[setting]
    model = apply_activation_checkpointing(build_model("SCNet", args.device), parts).train()
    inputs = make_inputs(args.size, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)
    trainer_class = amp_trainer_class(args.device) if amp else SimpleTrainer
    kwargs = {"grad_scaler": torch.amp.GradScaler("cuda")} if trainer_class is AMPTrainer else {}
    trainer = trainer_class(model, itertools.repeat(inputs), optimizer, **kwargs)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = rss_mb()
    times = []
    with EventStorage() as storage:
        for trainer.iter in range(args.steps + 1):
            storage.iter = trainer.iter
            synchronize(args.device)
            start = time.perf_counter()
            trainer.run_step()
            synchronize(args.device)
            times.append(time.perf_counter() - start)
            storage.step()
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"step_s": times[1:], "peak_mb": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps after one untimed step")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one setting, in a child process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return

    results = {}
    for setting in SETTINGS:
        argv = ["--device", args.device, "--size", str(args.size), "--steps", str(args.steps),
                "--threads", str(args.threads)]
        try:
            results[setting] = measure_in_child(__file__, setting, argv)
        except RuntimeError as e:  # say so, measure the rest
            print(e, file=sys.stderr)
            continue
        print(f"measured {setting}: {results[setting]}", file=sys.stderr)
    if "float32 (baseline)" not in results:
        raise SystemExit("benchmark_memory.py: the float32 baseline could not be measured; no ratios")

    amp = "bfloat16" if args.device == "cpu" else "float16"
    print(f"SCNet R-50-FPN, 2 images {args.size}x{args.size}, device {args.device}, torch threads {args.threads}, "
          f"{args.steps} timed steps per setting (median [min-max]); AMP = {amp} autocast; "
          f"checkpointing = {', '.join(ALL_PARTS)}")
    print("| setting | peak memory (MB) | vs float32 | step time (s) | vs float32 |")
    print("|---|---|---|---|---|")
    base = results["float32 (baseline)"]
    base_step = statistics.median(base["step_s"])
    for setting, r in results.items():
        step = statistics.median(r["step_s"])
        print(f"| {setting} | {r['peak_mb']:.0f} | {r['peak_mb'] / base['peak_mb']:.2f}x | "
              f"{step:.2f} [{min(r['step_s']):.2f}-{max(r['step_s']):.2f}] | {step / base_step:.2f}x |")
    ckpt = results.get("float32 + checkpointing")
    if ckpt:
        print(f"targets: checkpointing peak memory <= 0.7x: {ckpt['peak_mb'] / base['peak_mb']:.2f}x; "
              f"step time <= 1.3x: {statistics.median(ckpt['step_s']) / base_step:.2f}x")


if __name__ == "__main__":
    main()
