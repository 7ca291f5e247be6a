#!/usr/bin/env python
"""Converts an mmdetection SCNet / HTC / Cascade Mask R-CNN checkpoint (file or URL) into a detectron2
checkpoint of this project's model, checked tensor by tensor against the model a config builds.

    python tools/convert_mmdet_checkpoint.py scnet_r50_fpn_1x_coco-c3f09857.pth \\
        --config-file configs/COCO-InstanceSegmentation/mmdet/scnet_R_50_FPN_1x.py --output scnet_r50.d2.pth

Without --output it only checks, and prints what the checkpoint holds. ``train.init_checkpoint=mmdet://<file
or URL>`` does the same conversion on the fly (cached); this command is for a file to ship or inspect.
"""
import argparse
import contextlib
import os
import shutil
import sys
import time

from cascades.checkpoint import CONVERSION_KEY, MMDetConversionError, check_fits, converted_checkpoint
from cascades.engine.progress import format_duration
from detectron2.config import LazyConfig, instantiate


@contextlib.contextmanager
def _step(description):
    """Says on stderr what the user waits for, and when it is done how long it took."""
    print(f"{description} ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    yield
    print(f"  done in {format_duration(time.monotonic() - start)}", file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="mmdetection checkpoint: a .pth file or an http(s) URL")
    parser.add_argument("--config-file", required=True, help="our config whose model the weights are for")
    parser.add_argument("--output", help="where to write the converted checkpoint (.pth)")
    args = parser.parse_args(argv)
    import torch

    try:
        with _step(f"converting {args.source} (downloaded and converted once, then cached)"):
            path = converted_checkpoint(args.source)
            checkpoint = torch.load(path, weights_only=True)
        with _step(f"checking it against {os.path.basename(args.config_file)}'s model"):
            model = instantiate(LazyConfig.load(args.config_file).model)
            check_fits(checkpoint["model"], model.state_dict())
    except MMDetConversionError as e:
        sys.exit(f"error: {e}")
    info = checkpoint[CONVERSION_KEY]
    print(f"{args.source}: mmdetection {info['architecture']} {info['backbone']}-FPN, {info['num_classes']} "
          f"classes, {len(checkpoint['model'])} tensors, all of {os.path.basename(args.config_file)}'s model")
    if args.output:
        with _step(f"writing {args.output}"):
            partial = f"{args.output}.partial-{os.getpid()}"
            shutil.copyfile(path, partial)
            os.replace(partial, args.output)
        print(f"written: {args.output}")


if __name__ == "__main__":
    main()
