#!/usr/bin/env python
"""
Exports a model's inference for deployment (detectron2's tools/deploy/export_model.py, for LazyConfigs):
torch.export (.pt2), ONNX (.onnx, run with onnxruntime) or TorchScript by tracing (.ts). docs/EXPORT.md
says what each format supports.

  tools/export_model.py --config-file configs/Balloon/scnet_R_18_FPN_small.py --format onnx \
      --output exported/ train.init_checkpoint=output/balloon_scnet_R_18_FPN_small/model_final.pth
  tools/export_model.py --config-file ... --format torchscript --export-method tracing --output exported/
  tools/export_model.py --config-file ... --format torch_export --output exported/ --benchmark

The sample input is --sample-image, resized as the config's test mapper does, else the first image of
the config's test dataset. --benchmark then times the exported model against the eager model on the
sample, in the same run, one thread each, alternating the two.
"""

import argparse
import json
import logging
import os
import statistics
import sys
import time

import numpy as np
import torch

import detectron2.data.transforms as T
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger

from cascades.engine.checkpoint import Checkpointer
from cascades.engine.config import exit_on_bad_input, load_config
from cascades.export import (FORMATS, UnsupportedExport, check_exportable, export, inference_adapter, load,
                             output_names)

logger = logging.getLogger("export_model")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig .py file")
    parser.add_argument("--format", choices=list(FORMATS), default="torch_export", help="output format")
    parser.add_argument("--export-method", choices=["tracing"], default=None,
                        help="TorchScript's export method (tracing, the only one); other formats take none")
    parser.add_argument("--output", required=True, help="output folder; the model is written to model<ext>")
    parser.add_argument("--sample-image", default=None, help="sample image (default: the config's test dataset)")
    parser.add_argument("--benchmark", action="store_true", help="time the exported model against eager")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each model with --benchmark")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides key=value, e.g. train.init_checkpoint=model_final.pth")
    return parser


def check_arguments(args):
    if args.export_method is not None and args.format != "torchscript":
        raise ValueError(f"--export-method {args.export_method} applies to --format torchscript only; "
                         f"{args.format} has one export method")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.sample_image is not None and not os.path.isfile(args.sample_image):
        raise FileNotFoundError(f"--sample-image {args.sample_image!r} does not exist")
    if os.path.isfile(args.output):
        raise ValueError(f"--output {args.output!r} is a file; expected a folder")


def sample_image(cfg, path):
    """The sample as the model's input: a float32 3 x H x W tensor in the model's format, resized by the
    config's test augmentations (as Predictor and the test loader do)."""
    mapper = cfg.dataloader.test.mapper
    if path is None:
        dataset = cfg.dataloader.test.dataset.names
        name = dataset if isinstance(dataset, str) else dataset[0]
        path = DatasetCatalog.get(name)[0]["file_name"]
    image = read_image(path, format=mapper.image_format)
    augmented = T.AugInput(image)
    T.AugmentationList([instantiate(a) for a in mapper.augmentations])(augmented)
    return torch.as_tensor(np.ascontiguousarray(augmented.image.transpose(2, 0, 1)).astype("float32")), path


def build_model(cfg):
    model = instantiate(cfg.model).eval()
    checkpoint = cfg.train.get("init_checkpoint", "")
    if checkpoint:
        Checkpointer(model, strict=True).load(checkpoint)
    else:
        logger.warning("train.init_checkpoint is empty: exporting the model's random initial weights")
    return model


def benchmark(eager, exported, image, repeats):
    """Median, min and max seconds per image of each, timed alternately after one untimed run each, so
    that a change of the machine's load reaches both."""
    times = {"eager": [], "exported": []}
    runs = {"eager": lambda: eager(image), "exported": lambda: exported(image)}
    with torch.no_grad():
        for run in runs.values():
            run()
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    summary = {name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)} for name, t in times.items()}
    # The ratio of each alternating pair: its spread shows how much the machine's load moved.
    ratios = [x / e for x, e in zip(times["exported"], times["eager"])]
    summary["ratio_median"] = summary["exported"]["median_s"] / summary["eager"]["median_s"]
    summary["pair_ratio_min_max"] = [min(ratios), max(ratios)]
    return summary


def main(argv=None):
    args = argument_parser().parse_args(argv)
    setup_logger(name="export_model")
    prog = os.path.basename(sys.argv[0])
    with exit_on_bad_input(prog):
        check_arguments(args)
        cfg = load_config(args.config_file, args.opts)
        torch.set_num_threads(1)
        model = build_model(cfg)
        check_exportable(model, args.format)
        image, source = sample_image(cfg, args.sample_image)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "model" + FORMATS[args.format])
    logger.info(f"Exporting to {path} ({args.format}) with the sample {source} ({tuple(image.shape)})")
    try:
        adapter = export(model, image, args.format, path)
    except UnsupportedExport as e:  # found while tracing: a part that branches on run-time values
        raise SystemExit(f"{prog}: error: {e}") from None
    logger.info(f"Wrote {path}; input: a float32 3 x H x W image; outputs: {', '.join(output_names(adapter))}")
    if args.benchmark:
        exported = load(path, num_threads=1)
        result = benchmark(inference_adapter(model, image), exported, image, args.repeats)
        result.update(format=args.format, config=args.config_file, image_size=list(image.shape[1:]),
                      repeats=args.repeats, threads=1)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
