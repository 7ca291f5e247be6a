#!/usr/bin/env python
"""
Draws a trained model's instances on images or a video with detectron2's Visualizer.

  tools/demo.py --config-file configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py \
      --input a.jpg images/ --output out/ train.init_checkpoint=output/demo/model_final.pth
  tools/demo.py --config-file ... --video-input v.mp4 --output out/ train.init_checkpoint=...

Each instance gets its own colour. Images that cannot be read are reported and skipped; the exit
status is then 1.
"""

import argparse
import glob
import logging
import os
import sys

import cv2
import tqdm

from cascades.engine.atomic import AtomicFile
from cascades.engine.config import exit_on_bad_input, load_config
from cascades.engine.predictor import Predictor
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def argument_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig .py file")
    parser.add_argument("--input", nargs="+", default=[], help="images, folders of images or glob patterns")
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--output", required=True, help="folder for the drawn images / video")
    parser.add_argument("--confidence-threshold", type=float, default=0.5, help="minimum score to draw")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides key=value, e.g. train.init_checkpoint=model_final.pth")
    return parser


def expand_inputs(inputs):
    """Image paths from files, folders (their images, sorted) and glob patterns."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS))
        elif os.path.isfile(item):
            paths.append(item)
        elif glob.has_magic(item) and glob.glob(item):
            paths += sorted(glob.glob(item))
        else:
            raise FileNotFoundError(f"--input {item!r}: no such file, folder or matching pattern")
    return paths


class Demo:
    def __init__(self, cfg, confidence_threshold):
        self.predictor = Predictor(cfg)
        names = cfg.dataloader.test.dataset.names
        self.metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])
        self.confidence_threshold = confidence_threshold

    def instances(self, image):
        instances = self.predictor(image)["instances"].to("cpu")
        return instances[instances.scores >= self.confidence_threshold]

    def draw_image(self, image):
        # ColorMode.IMAGE gives each instance its own colour.
        visualizer = Visualizer(image[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
        return visualizer.draw_instance_predictions(self.instances(image)).get_image()[:, :, ::-1]

    def draw_video(self, capture):
        # The video visualizer keeps an instance's colour from frame to frame.
        visualizer = VideoVisualizer(self.metadata, ColorMode.IMAGE)
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield visualizer.draw_instance_predictions(frame[:, :, ::-1], self.instances(frame)).get_image()[:, :, ::-1]


def write_image(path, image):
    ok, encoded = cv2.imencode(os.path.splitext(path)[1] or ".png", image)
    if not ok:
        raise RuntimeError(f"Could not encode {path}")
    with AtomicFile(path, "wb") as f:
        f.write(encoded.tobytes())


def run_images(demo, paths, output):
    logger = logging.getLogger("detectron2")
    failed = []
    for path in tqdm.tqdm(paths, desc="demo", disable=len(paths) < 2):
        try:
            image = read_image(path, format="BGR")
        except Exception as e:  # PIL raises several types for unreadable or truncated files
            failed.append(f"{path}: not a readable image ({type(e).__name__}: {e})")
            logger.error(f"--input {failed[-1]}; skipped")
            continue
        write_image(os.path.join(output, os.path.basename(path)), demo.draw_image(image))
    return failed


def run_video(demo, path, output):
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError(f"--video-input {path!r}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    name = os.path.splitext(os.path.basename(path))[0] + ".mp4"
    partial = os.path.join(output, f".{name}.partial.mp4")
    writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    for frame in tqdm.tqdm(demo.draw_video(capture), total=frames, desc="video"):
        writer.write(frame)
    writer.release()
    capture.release()
    os.replace(partial, os.path.join(output, name))


def main(argv=None):
    args = argument_parser().parse_args(argv)
    # "--input a.jpg key=value": argparse gives the overrides to the greedy --input.
    overrides = [item for item in args.input if "=" in item and not os.path.exists(item)]
    args.input = [item for item in args.input if item not in overrides]
    args.opts = overrides + args.opts
    setup_logger(name="detectron2")
    if not args.input and not args.video_input:
        raise SystemExit("demo.py: error: give --input images/folders and/or --video-input")
    with exit_on_bad_input("demo.py"):
        cfg = load_config(args.config_file, args.opts)
        paths = expand_inputs(args.input)
        if args.video_input and not os.path.isfile(args.video_input):
            raise FileNotFoundError(f"--video-input {args.video_input!r}: no such file")
        demo = Demo(cfg, args.confidence_threshold)
    os.makedirs(args.output, exist_ok=True)
    failed = run_images(demo, paths, args.output)
    if args.video_input:
        run_video(demo, args.video_input, args.output)
    print(f"Visualizations are in {os.path.abspath(args.output)}")
    if failed:
        sys.exit(f"demo.py: error: {len(failed)} input(s) could not be read:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
