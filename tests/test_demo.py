"""tools/demo.py on images, a folder and a video, and the Predictor from Python."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from cascades.data.default_shapes import generate_split
from cascades.engine import Checkpointer, Predictor
from cascades.engine.config import load_config
from detectron2.config import instantiate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights of the demo model: enough to exercise drawing (a low threshold shows boxes)."""
    folder = tmp_path_factory.mktemp("weights")
    Checkpointer(instantiate(load_config(DEMO).model), str(folder)).save("model_final")
    return str(folder / "model_final.pth")


@pytest.fixture(scope="module")
def images():
    folder = os.path.join(generate_split("cascades_shapes_val"), "images")
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:3]]


def demo(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--config-file", DEMO, *args],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def test_demo_draws_images_folders_and_video(tmp_path, weights, images):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in images[1:]:
        shutil.copy(path, inputs)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    video = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5, (256, 256))
    for path in images:
        writer.write(cv2.imread(path))
    writer.release()

    out = tmp_path / "out"
    result = demo("--input", images[0], str(inputs), "--video-input", video, "--output", str(out),
                  "--confidence-threshold", "0", f"train.init_checkpoint={weights}")
    # The unreadable image is reported and fails the run, but every other input is drawn.
    assert result.returncode == 1
    assert "broken.jpg: not a readable image" in result.stderr
    for path in images:
        drawn, original = cv2.imread(str(out / os.path.basename(path))), cv2.imread(path)
        assert drawn.shape == original.shape and not np.array_equal(drawn, original)
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(images)
    assert sorted(os.listdir(out)) == sorted([os.path.basename(p) for p in images] + ["clip.mp4"])


@pytest.mark.parametrize("args, message", [
    (["--input", "nowhere/*.jpg"], "--input 'nowhere/*.jpg': no such file, folder or matching pattern"),
    (["--input", "{image}"], "Predictor needs trained weights"),
    (["--input", "{image}", "train.init_checkpoint={other}"], "does not fit this model"),
    (["--input", "{image}", "--video-input", "missing.mp4", "train.init_checkpoint={weights}"],
     "--video-input 'missing.mp4': no such file"),
])
def test_demo_bad_input(tmp_path, args, message, images, weights):
    import torch

    other = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    args = [a.format(image=images[0], other=other, weights=weights) for a in args]
    result = demo("--output", str(tmp_path / "out"), *args)
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


def test_predictor_from_python(weights, images):
    cfg = load_config(DEMO, [f"train.init_checkpoint={weights}", "train.device=cpu"])
    predictor = Predictor(cfg)
    image = cv2.imread(images[0])
    instances = predictor(image)["instances"]
    assert instances.image_size == image.shape[:2]
    assert instances.pred_masks.shape[1:] == image.shape[:2]
    with pytest.raises(ValueError, match="expects an HxWx3 BGR image"):
        predictor(image[:, :, 0])
