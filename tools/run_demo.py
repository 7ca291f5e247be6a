#!/usr/bin/env python
"""
What `make demo [MODEL=scnet|mnc|htc|cascade]` runs: trains one of our models on the generated shapes
(cascades.data.default_shapes) on the CPU, evaluates it on cascades_shapes_val, draws its predictions
on the validation images, and prints a table (mask / box AP, time) and where everything is.

  tools/run_demo.py                    # SCNet
  tools/run_demo.py mnc                # MNC, 5 stages end to end (RoI warping)
  tools/run_demo.py htc train.max_iter=300 --output output/htc_short

An interrupted demo continues from its last checkpoint when run again (train_net.py --resume); the
results of an earlier run are removed first, so that what is printed is always this run's.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# MODEL -> its config under configs/DefaultShapes/ (all share the SCNet demo's data and recipe).
MODELS = {
    "scnet": "scnet_R_18_FPN_demo.py",
    "mnc": "mnc_R_18_FPN_demo.py",
    "htc": "htc_R_18_FPN_demo.py",
    "cascade": "cascade_mask_rcnn_semantic_R_18_FPN_demo.py",  # ours, + semantic branch
}
DESCRIPTIONS = {
    "scnet": "SCNet",
    "mnc": "MNC (5 stages, RoI warping)",
    "htc": "HTC",
    "cascade": "Cascade Mask R-CNN + semantic branch",
}
SCORE_THRESHOLD = 0.5  # the drawn predictions and the contact sheet's
# Written by the demo into its output folder; removed before a run so that none is left from an earlier one.
RESULTS = ("eval_results.json", "contact_sheet.png", "training_curves.png", "visualizations")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("words", nargs="*", metavar="MODEL | key=value",
                        help=f"the model, one of {', '.join(MODELS)} (default: scnet), and config overrides "
                             "for train_net.py, e.g. train.max_iter=300")
    parser.add_argument("--output", help="output folder (default: output/demo/<model>)")
    return parser


def parse_args(argv=None):
    args = argument_parser().parse_intermixed_args(argv)  # options before, between or after the words
    models = [w for w in args.words if "=" not in w]
    args.opts = [w for w in args.words if "=" in w]
    if len(models) > 1:
        raise SystemExit(f"run_demo.py: error: one MODEL at a time; got {', '.join(models)}")
    if any(o.split("=", 1)[0] == "train.output_dir" for o in args.opts):
        raise SystemExit("run_demo.py: error: give the output folder as --output DIR, not train.output_dir=")
    args.model = models[0] if models else "scnet"
    if args.model not in MODELS:
        raise SystemExit(f"run_demo.py: error: unknown MODEL {args.model!r}; choose one of: {', '.join(MODELS)}")
    args.config = os.path.join(ROOT, "configs", "DefaultShapes", MODELS[args.model])
    args.output = os.path.abspath(args.output or os.path.join("output", "demo", args.model))
    return args


def remove_earlier_results(output):
    for name in RESULTS:
        path = os.path.join(output, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def run_step(description, command):
    """Runs one step in a child process (one OpenMP thread unless the caller chose otherwise: the data
    loader's worker takes the other core); exits with the step's status when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    print(f"\n=== {description}\n$ {' '.join(command)}", flush=True)
    status = subprocess.run(command, cwd=ROOT, env=env).returncode
    if status != 0:
        raise SystemExit(f"run_demo.py: error: {description} failed (exit status {status}); its messages are above")


def cpu_seconds():
    """User and system time of this process and its finished children (and theirs: the data loader's
    workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def summary(args, results, wall, user, system):
    from tabulate import tabulate

    from cascades.engine.progress import format_duration

    segm, bbox = results["segm"], results["bbox"]
    table = tabulate([[DESCRIPTIONS[args.model], f"{segm['AP']:.1f}", f"{segm['AP50']:.1f}", f"{bbox['AP']:.1f}",
                       f"{bbox['AP50']:.1f}", format_duration(wall), format_duration(user + system)]],
                     headers=["model", "mask AP", "mask AP50", "box AP", "box AP50", "wall time", "CPU time"],
                     tablefmt="github", disable_numparse=True)
    out = args.output
    where = [
        ("config", os.path.relpath(args.config)),
        ("evaluation (cascades_shapes_val)", os.path.join(out, "eval_results.json")),
        ("contact sheet", os.path.join(out, "contact_sheet.png")),
        ("training curves", os.path.join(out, "training_curves.png")),
        ("drawn predictions", os.path.join(out, "visualizations") + "/"),
        ("weights", os.path.join(out, "model_final.pth")),
        ("log, metrics, TensorBoard", out + "/"),
    ]
    width = max(len(k) for k, _ in where)
    return "\n".join([table, "(CPU time: user + system of every process, the data loader's included)", "",
                      *[f"{k:<{width}}  {v}" for k, v in where]])


def main(argv=None):
    args = parse_args(argv)
    start, cpu_start = time.monotonic(), cpu_seconds()
    from cascades.data.default_shapes import generate_split

    val_images = os.path.join(generate_split("cascades_shapes_val"), "images")
    generate_split("cascades_shapes_train")
    remove_earlier_results(args.output)
    python = sys.executable
    config = ["--config-file", args.config]
    output = [f"train.output_dir={args.output}", *args.opts]
    run_step(f"Training {DESCRIPTIONS[args.model]} and evaluating it",
             [python, "train_net.py", *config, "--resume", *output])
    weights = os.path.join(args.output, "model_final.pth")
    if not os.path.isfile(os.path.join(args.output, "eval_results.json")):
        # Training had already finished in an earlier run, which train_net.py then does not evaluate again.
        run_step("Evaluating", [python, "train_net.py", *config, "--eval-only", *output,
                                f"train.init_checkpoint={weights}"])
    run_step("Drawing the predictions on the validation images",
             [python, "tools/demo.py", *config, "--input", val_images, "--output",
              os.path.join(args.output, "visualizations"), "--confidence-threshold", str(SCORE_THRESHOLD),
              f"train.init_checkpoint={weights}", *args.opts])
    if not os.path.isfile(os.path.join(args.output, "contact_sheet.png")):
        run_step("Contact sheet and training curves", [python, "-m", "cascades.engine.run_report", *config,
                                                       "--score-threshold", str(SCORE_THRESHOLD), *output])
    with open(os.path.join(args.output, "eval_results.json")) as f:
        results = json.load(f)
    user, system = (now - before for now, before in zip(cpu_seconds(), cpu_start))
    print("\n" + summary(args, results, time.monotonic() - start, user, system))


if __name__ == "__main__":
    main()
