"""The two pictures a person looks at first after a run, written into its output folder:

- ``contact_sheet.png``: the first N validation images, each as ground truth beside the model's
  predictions (instances scoring at least a threshold), in a grid;
- ``training_curves.png``: the losses and the evaluation APs over the iterations, from ``metrics.json``.

train_net.py writes both at the end of every training run, and ``make demo`` at the end of the demo.
For an earlier run::

    python -m cascades.engine.run_report --config-file cfg.py train.output_dir=output/run
"""

import io
import json
import logging
import math
import os
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import ColorMode, Visualizer

from .atomic import AtomicFile

__all__ = ["CONTACT_SHEET", "TRAINING_CURVES", "contact_sheet", "draw_predictions", "plot_training_curves",
           "report_finished_run", "training_series", "write_run_report"]

CONTACT_SHEET = "contact_sheet.png"
TRAINING_CURVES = "training_curves.png"
TILE = 256  # each image is fitted into a TILE x TILE square
CAPTION = 22  # height of the caption strip above each image
GAP = 6  # between the pairs of the grid
_BACKGROUND = (255, 255, 255)

logger = logging.getLogger("detectron2")

Series = Dict[str, List[Tuple[int, float]]]


def training_series(metrics_path: str) -> Tuple[Series, Series]:
    """The losses (``total_loss`` and every ``loss_*``) and the APs (every ``<task>/AP``, e.g. ``segm/AP``)
    logged in a detectron2 ``metrics.json``, each as [(iteration, value)] in the order logged."""
    losses, aps = {}, {}
    with open(metrics_path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # a line a killed run cut short
                continue
            if not isinstance(record, dict) or "iteration" not in record:
                continue
            for key, value in record.items():
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    continue
                if key == "total_loss" or key.startswith("loss_"):
                    losses.setdefault(key, []).append((record["iteration"], value))
                elif key.endswith("/AP"):
                    aps.setdefault(key, []).append((record["iteration"], value))
    return losses, aps


def plot_training_curves(losses: Series, aps: Series, title: str = ""):
    """A figure of two panels: the losses (log scale; ``total_loss`` bold) and the APs over iterations."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no window

    figure = Figure(figsize=(13, 5), dpi=100, layout="constrained")
    loss_axes, ap_axes = figure.subplots(1, 2, width_ratios=(3, 2))
    for key in sorted(losses, key=lambda k: (k != "total_loss", k)):
        iterations, values = zip(*losses[key])
        loss_axes.plot(iterations, values, label=key, linewidth=2.2 if key == "total_loss" else 1.0)
    loss_axes.set(xlabel="iteration", ylabel="loss", title="training losses")
    if losses and all(v > 0 for series in losses.values() for _, v in series):
        loss_axes.set_yscale("log")
    if losses:
        loss_axes.legend(fontsize=7, ncol=2)
    for key in sorted(aps):
        iterations, values = zip(*aps[key])
        ap_axes.plot(iterations, values, marker="o", label=key)
        ap_axes.annotate(f"{values[-1]:.1f}", (iterations[-1], values[-1]), textcoords="offset points",
                         xytext=(4, 4), fontsize=8)
    ap_axes.set(xlabel="iteration", ylabel="AP", title="evaluation" if aps else "evaluation (none logged)")
    if aps:
        ap_axes.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def _fit(image: np.ndarray, tile: int) -> np.ndarray:
    """``image`` scaled to fit a ``tile`` square (aspect kept), centred on the background colour."""
    height, width = image.shape[:2]
    scale = tile / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.full((tile, tile, 3), _BACKGROUND, np.uint8)
    top, left = (tile - size[1]) // 2, (tile - size[0]) // 2
    out[top:top + size[1], left:left + size[0]] = resized
    return out


def _captioned(image: np.ndarray, caption: str, tile: int) -> np.ndarray:
    strip = np.full((CAPTION, tile, 3), _BACKGROUND, np.uint8)
    cv2.putText(strip, caption, (4, CAPTION - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, _fit(image, tile)])


def contact_sheet(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], columns: int = 2, tile: int = TILE,
                  captions: Tuple[str, str] = ("ground truth", "prediction")) -> np.ndarray:
    """A grid of ``columns`` pairs per row; each pair is two HxWx3 uint8 images (any sizes, fitted into
    ``tile`` squares) side by side under their ``captions``, pairs ``GAP`` pixels apart. The sheet is
    rows * (tile + CAPTION) + (rows - 1) * GAP high and columns * 2 * tile + (columns - 1) * GAP wide."""
    if not pairs:
        raise ValueError("contact_sheet needs at least one pair of images")
    columns = min(columns, len(pairs))
    rows = math.ceil(len(pairs) / columns)
    cell_h, cell_w = tile + CAPTION, 2 * tile
    sheet = np.full((rows * cell_h + (rows - 1) * GAP, columns * cell_w + (columns - 1) * GAP, 3), _BACKGROUND,
                    np.uint8)
    for k, (left, right) in enumerate(pairs):
        top, x = (k // columns) * (cell_h + GAP), (k % columns) * (cell_w + GAP)
        sheet[top:top + cell_h, x:x + cell_w] = np.concatenate(
            [_captioned(left, captions[0], tile), _captioned(right, captions[1], tile)], axis=1)
    return sheet


def draw_predictions(image_bgr: np.ndarray, instances, metadata) -> np.ndarray:
    """``instances`` (on the CPU) drawn on the image with detectron2's Visualizer, each in its own colour."""
    visualizer = Visualizer(image_bgr[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
    return visualizer.draw_instance_predictions(instances).get_image()[:, :, ::-1]


def _draw_ground_truth(image_bgr: np.ndarray, record: dict, metadata) -> np.ndarray:
    visualizer = Visualizer(image_bgr[:, :, ::-1], metadata)
    return visualizer.draw_dataset_dict(record).get_image()[:, :, ::-1]


def _write_png(path: str, image_bgr: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError(f"cv2 could not encode {path}")
    with AtomicFile(path, "wb") as f:
        f.write(encoded.tobytes())


def _write_figure(path: str, figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    with AtomicFile(path, "wb") as f:
        f.write(buffer.getvalue())


def _sheet_pairs(cfg, weights: str, num_images: int, score_threshold: float):
    from .predictor import Predictor  # imports the model code; not needed for the curves

    configured = cfg.train.init_checkpoint
    cfg.train.init_checkpoint = weights  # set for the Predictor only: the caller's cfg is left as it was
    try:
        predictor = Predictor(cfg, tta=False)
    finally:
        cfg.train.init_checkpoint = configured
    names = cfg.dataloader.test.dataset.names
    metadata = MetadataCatalog.get(names if isinstance(names, str) else names[0])
    pairs = []
    for record in instantiate(cfg.dataloader.test.dataset)[:num_images]:
        image = read_image(record["file_name"], format="BGR")
        instances = predictor(image)["instances"].to("cpu")
        instances = instances[instances.scores >= score_threshold]
        pairs.append((_draw_ground_truth(image, record, metadata), draw_predictions(image, instances, metadata)))
    return pairs


def write_run_report(cfg, num_images: int = 8, score_threshold: float = 0.5, weights: str = "") -> List[str]:
    """Writes ``training_curves.png`` (when the run logged ``metrics.json``) and ``contact_sheet.png`` (the
    first ``num_images`` of ``dataloader.test``, predictions of ``weights``, by default the run's
    ``model_final.pth``) into ``train.output_dir``; returns the paths written."""
    output_dir = cfg.train.output_dir
    written = []
    metrics = os.path.join(output_dir, "metrics.json")
    if os.path.isfile(metrics):
        figure = plot_training_curves(*training_series(metrics), title=os.path.basename(os.path.abspath(output_dir)))
        written.append(os.path.join(output_dir, TRAINING_CURVES))
        _write_figure(written[-1], figure)
    weights = weights or os.path.join(output_dir, "model_final.pth")
    if os.path.isfile(weights) or "://" in weights:
        sheet = contact_sheet(_sheet_pairs(cfg, weights, num_images, score_threshold))
        written.append(os.path.join(output_dir, CONTACT_SHEET))
        _write_png(written[-1], sheet)
    return written


def report_finished_run(cfg) -> None:
    """:func:`write_run_report` at the end of a training run (train_net.py), logging where the pictures are.
    The run's results are saved by then: a picture that cannot be made is a warning, not a failed run."""
    try:
        written = write_run_report(cfg)
    except Exception:
        logger.warning(f"Could not write the contact sheet / training curves into {cfg.train.output_dir}; "
                       "the run's checkpoints and results are complete", exc_info=True)
        return
    if written:
        logger.info("Contact sheet and training curves: " + ", ".join(os.path.abspath(p) for p in written))


def main(argv=None):
    import argparse

    from detectron2.utils.logger import setup_logger

    from .config import exit_on_bad_input, load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="the run's LazyConfig (or its output's config.yaml)")
    parser.add_argument("--num-images", type=int, default=8, help="validation images on the contact sheet")
    parser.add_argument("--score-threshold", type=float, default=0.5, help="minimum score of a drawn prediction")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. train.output_dir=output/run")
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error(f"--num-images must be at least 1; got {args.num_images}")
    setup_logger(name="detectron2")
    with exit_on_bad_input("run_report"):
        cfg = load_config(args.config_file, args.opts)
    written = write_run_report(cfg, args.num_images, args.score_threshold)
    if not written:
        raise SystemExit(f"run_report: error: {cfg.train.output_dir} holds neither metrics.json nor model_final.pth")
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
