#!/usr/bin/env python
"""
Draws a trained model's instances on images or a video with detectron2's Visualizer.

  tools/demo.py --config-file configs/DefaultShapes/scnet_R_18_FPN_demo.py \
      --input a.jpg images/ --output out/ train.init_checkpoint=output/demo/scnet/model_final.pth
  tools/demo.py --config-file ... --video-input v.mp4 --output out/ train.init_checkpoint=...

Each instance gets its own colour. A drawn image keeps its input's file name (with ".png" added when
that is not an image extension); inputs from different folders that share a name keep as much of their
folders as tells them apart (a/same.jpg, b/same.jpg). Images that cannot be read or drawn are reported
and skipped; the exit status is then 1.
"""

import argparse
import collections
import glob
import logging
import os
import sys

import cv2

from cascades.engine.atomic import AtomicFile
from cascades.engine.config import exit_on_bad_input, load_config
from cascades.engine.predictor import Predictor
from cascades.engine.progress import progress_over
from cascades.engine.run_report import draw_predictions
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode

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
    """Image paths from files, folders (their images, sorted) and glob patterns; a file named twice
    is drawn once."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise FileNotFoundError(f"--input {item!r}: the folder holds no images ({' '.join(IMAGE_EXTENSIONS)})")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        elif glob.has_magic(item) and any(os.path.isfile(p) for p in glob.glob(item)):
            paths += sorted(p for p in glob.glob(item) if os.path.isfile(p))
        else:
            raise FileNotFoundError(f"--input {item!r}: no such file, folder or matching pattern")
    unique = {}
    for path in paths:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values())


def output_names(paths):
    """The drawn image's path under --output for each input: its file name (".png" added to one that
    is not an image extension, which cv2 could not encode), or, for inputs that share a file name, its
    path below the deepest folder they have in common."""
    names = [os.path.basename(p) + ("" if p.lower().endswith(IMAGE_EXTENSIONS) else ".png") for p in paths]
    sharing = collections.defaultdict(list)
    for i, name in enumerate(names):
        sharing[name].append(i)
    for group in sharing.values():
        if len(group) > 1:
            common = os.path.commonpath([os.path.dirname(os.path.abspath(paths[i])) for i in group])
            for i in group:
                folder = os.path.relpath(os.path.dirname(os.path.abspath(paths[i])), common)
                names[i] = os.path.normpath(os.path.join(folder, names[i]))
    return names


def check_video(path):
    """Fails before the model loads on a video without a single decodable frame."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--video-input {path!r}: no such file")
    capture = cv2.VideoCapture(path)
    try:
        if not (capture.isOpened() and capture.read()[0]):
            raise ValueError(f"--video-input {path!r}: not a readable video (no frame could be decoded)")
    finally:
        capture.release()


def check_output(path):
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--output {path!r} is a file; expected a folder for the drawn images")


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
        return draw_predictions(image, self.instances(image), self.metadata)

    def draw_video(self, capture):
        # The video visualizer keeps an instance's colour from frame to frame.
        visualizer = VideoVisualizer(self.metadata, ColorMode.IMAGE)
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield visualizer.draw_instance_predictions(frame[:, :, ::-1], self.instances(frame)).get_image()[:, :, ::-1]


def write_image(path, image):
    ok, encoded = cv2.imencode(os.path.splitext(path)[1], image)
    if not ok:
        raise ValueError(f"cv2 could not encode {path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with AtomicFile(path, "wb") as f:
        f.write(encoded.tobytes())


def run_images(demo, paths, output):
    logger = logging.getLogger("detectron2")
    failed = []
    for path, name in progress_over(list(zip(paths, output_names(paths))), "drawing", unit="images"):
        try:
            image = read_image(path, format="BGR")
        except Exception as e:  # PIL raises several types for unreadable or truncated files
            failed.append(f"{path}: not a readable image ({type(e).__name__}: {e})")
            logger.error(f"--input {failed[-1]}; skipped")
            continue
        try:
            write_image(os.path.join(output, name), demo.draw_image(image))
        except ValueError as e:  # e.g. an empty image, or an encoder cv2 lacks
            failed.append(f"{path}: {e}")
            logger.error(f"--input {failed[-1]}; skipped")
    return failed


def run_video(demo, path, output):
    capture = cv2.VideoCapture(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    name = os.path.splitext(os.path.basename(path))[0] + ".mp4"
    partial = os.path.join(output, f".{name}.partial.mp4")
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    for frame in progress_over(demo.draw_video(capture), "video", total=frames, unit="frames"):
        if writer is None:  # sized by the frames themselves, which the container's header may misstate
            writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
        writer.write(frame)
    capture.release()
    # check_video decoded a first frame, so the writer exists.
    writer.release()
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
        check_output(args.output)
        cfg = load_config(args.config_file, args.opts)
        paths = expand_inputs(args.input)
        if args.video_input:
            check_video(args.video_input)
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
