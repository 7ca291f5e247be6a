#!/usr/bin/env python
"""Test-time augmentation against plain inference, in one run: the config's evaluator (COCO box and mask
AP) for each, and the time per image as a ratio to plain inference's, measured in the same process on
the same images (each image goes through every variant in turn, so that a shared machine's load weighs
on all of them alike).

    DETECTRON2_DATASETS=... OMP_NUM_THREADS=1 python tools/benchmark_tta.py \\
        --config-file configs/Balloon/scnet_R_18_FPN_small.py --checkpoint model_final.pth \\
        --aug 256/flip --aug 256,320/flip --aug 256/flip/mmdetection2 [--json out.json] [overrides]

Each ``--aug`` is one TTA variant: its short-edge sizes (``test.aug.min_sizes``), then ``flip`` (each
size also flipped) and/or a merge (``detectron2``, the default, or ``mmdetection2``), separated by ``/``.
Its ``test.aug.max_size`` keeps the config's test aspect cap: the test max size scaled as the largest
size is to the test short edge. Times are the process CPU time (with one thread: the model's compute,
whatever else the machine runs) and the wall time, summed over the images; the first image is run once
before timing.
"""
import argparse
import json
import os
import sys
import time

import torch

from detectron2.config import instantiate

from cascades.engine.checkpoint import Checkpointer
from cascades.engine.config import load_config
from cascades.engine.test_aug import config_test_size, tta_model
from cascades.modeling.test_time_augmentation import MERGES


def parse_aug(text: str, test_short: int, test_max: int) -> dict:
    """``"256,320/flip/mmdetection2"`` -> test.aug settings."""
    sizes, *options = text.split("/")
    unknown = [o for o in options if o != "flip" and o not in MERGES]
    if unknown:
        raise SystemExit(f"benchmark_tta.py: error: --aug {text!r}: unknown options {unknown} "
                         f"(expected 'flip' or a merge: {', '.join(MERGES)})")
    try:
        min_sizes = [int(s) for s in sizes.split(",")]
    except ValueError:
        raise SystemExit(f"benchmark_tta.py: error: --aug {text!r}: sizes must be integers separated by commas")
    merge = next((o for o in options if o in MERGES), "detectron2")
    max_size = round(test_max * max(min_sizes) / test_short)
    return dict(enabled=False, min_sizes=min_sizes, max_size=max_size, flip="flip" in options, merge=merge)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--aug", action="append", required=True, help="a TTA variant, e.g. 192,256,320/flip")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (key=value)")
    args = parser.parse_args()

    cfg = load_config(args.config_file, args.opts)
    test_short, test_max = config_test_size(cfg)
    model = instantiate(cfg.model).to(cfg.train.device).eval()
    Checkpointer(model, strict=True).load(args.checkpoint)
    variants = {"plain": (model, 1)}
    for text in args.aug:
        cfg.test = {"aug": parse_aug(text, test_short, test_max)}
        settings = cfg.test.aug
        num_augs = len(settings.min_sizes) * (2 if settings.flip else 1)
        variants[text] = (tta_model(cfg, model), num_augs)
    evaluators = {name: instantiate(cfg.dataloader.evaluator) for name in variants}
    for evaluator in evaluators.values():
        evaluator.reset()
    cpu = dict.fromkeys(variants, 0.0)
    wall = dict.fromkeys(variants, 0.0)
    with torch.no_grad():
        for i, inputs in enumerate(instantiate(cfg.dataloader.test)):
            for name, (variant, _) in variants.items():
                if i == 0:
                    variant(inputs)  # warm-up, untimed
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                outputs = variant(inputs)
                cpu[name] += time.process_time() - start_cpu
                wall[name] += time.perf_counter() - start_wall
                evaluators[name].process(inputs, outputs)
            print(f"image {i + 1}: " + ", ".join(f"{n} {cpu[n]:.1f}s" for n in variants), flush=True)
    num_images = i + 1
    rows = []
    for name, (_, num_augs) in variants.items():
        results = evaluators[name].evaluate()
        rows.append(dict(
            variant=name, augmentations=num_augs, bbox_AP=results["bbox"]["AP"], segm_AP=results["segm"]["AP"],
            segm_AP50=results["segm"]["AP50"], cpu_s_per_image=cpu[name] / num_images,
            wall_s_per_image=wall[name] / num_images, cpu_ratio=cpu[name] / cpu["plain"],
            wall_ratio=wall[name] / wall["plain"],
        ))
    print(f"\n{num_images} images; CPU and wall time per image, and their ratios to plain inference")
    print("| variant | augs | box AP | mask AP | mask AP50 | CPU s/img | CPU ratio | ratio/aug | wall ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['augmentations']} | {r['bbox_AP']:.1f} | {r['segm_AP']:.1f} | "
              f"{r['segm_AP50']:.1f} | {r['cpu_s_per_image']:.2f} | {r['cpu_ratio']:.2f} | "
              f"{r['cpu_ratio'] / r['augmentations']:.2f} | {r['wall_ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(config=args.config_file, checkpoint=args.checkpoint, images=num_images, rows=rows), f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
