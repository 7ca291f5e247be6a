"""tools/demo.py on images, a folder and a video, and the Predictor from Python."""

import importlib.util
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


def write_video(path, images):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 5, (256, 256))
    for image in images:
        writer.write(cv2.imread(image))
    writer.release()


@pytest.mark.slow  # 15-35 s: trainings in subprocesses
def test_demo_draws_images_folders_and_video(tmp_path, weights, images):
    inputs, other = tmp_path / "inputs", tmp_path / "other"
    inputs.mkdir()
    other.mkdir()
    for path in images[1:]:
        shutil.copy(path, inputs)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    same_name = os.path.basename(images[1])
    shutil.copy(images[0], other / same_name)  # another image of the same name in another folder
    shutil.copy(images[0], tmp_path / "photo.dat")  # a readable image without an image extension
    video = str(tmp_path / "clip.mp4")
    write_video(video, images)

    out = tmp_path / "out"
    result = demo("--input", images[0], str(inputs), str(other / same_name), str(tmp_path / "photo.dat"),
                  "--video-input", video, "--output", str(out), "--confidence-threshold", "0",
                  f"train.init_checkpoint={weights}")
    # The unreadable image is reported and fails the run, but every other input is drawn.
    assert result.returncode == 1
    assert "broken.jpg: not a readable image" in result.stderr
    drawn = {os.path.basename(images[0]): images[0], f"inputs/{same_name}": images[1],
             f"other/{same_name}": images[0], os.path.basename(images[2]): images[2], "photo.dat.png": images[0]}
    for name, original in drawn.items():
        image, original = cv2.imread(str(out / name)), cv2.imread(original)
        assert image.shape == original.shape and not np.array_equal(image, original), name
    capture = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(images)
    written = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, files in os.walk(out) for f in files)
    assert written == sorted([*drawn, "clip.mp4"])


def test_output_names_tell_apart_inputs_of_the_same_name():
    spec = importlib.util.spec_from_file_location("demo_tool", os.path.join(ROOT, "tools", "demo.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    paths = ["/d/a/same.jpg", "/d/b/same.jpg", "/d/a/c/same.jpg", "/e/x.PNG", "/e/notes.dat", "/d/b/other.jpg"]
    assert tool.output_names(paths) == ["a/same.jpg", "b/same.jpg", "a/c/same.jpg", "x.PNG", "notes.dat.png",
                                        "other.jpg"]
    # The same file named twice is drawn once.
    assert tool.expand_inputs([__file__, os.path.join(os.path.dirname(__file__), ".", os.path.basename(__file__))]) \
        == [__file__]


def zero_frame_video(path, images):
    """An mp4 that opens (header and frame count intact) but whose every frame fails to decode."""
    write_video(path, images)
    data = bytearray(open(path, "rb").read())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at - 4 + size] = bytes(size - 8)
    with open(path, "wb") as f:
        f.write(data)
    return path


@pytest.mark.parametrize("args, message", [
    (["--input", "nowhere/*.jpg"], "--input 'nowhere/*.jpg': no such file, folder or matching pattern"),
    (["--input", "{image}"], "Predictor needs trained weights"),
    (["--input", "{image}", "train.init_checkpoint={other}"], "does not fit this model"),
    (["--input", "{image}", "--video-input", "missing.mp4", "train.init_checkpoint={weights}"],
     "--video-input 'missing.mp4': no such file"),
    (["--video-input", "{zero_frames}", "train.init_checkpoint={weights}"],
     "zero.mp4': not a readable video (no frame could be decoded)"),
    (["--input", "{empty}", "train.init_checkpoint={weights}"], "empty': the folder holds no images (.jpg"),
    (["--input", "{image}", "--output", "{a_file}", "train.init_checkpoint={weights}"],
     "a_file.txt' is a file; expected a folder"),
])
def test_demo_bad_input(tmp_path, args, message, images, weights):
    import torch

    other = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    (tmp_path / "a_file.txt").write_text("")
    names = dict(image=images[0], other=other, weights=weights, empty=tmp_path / "empty",
                 zero_frames=zero_frame_video(str(tmp_path / "zero.mp4"), images), a_file=tmp_path / "a_file.txt")
    args = [a.format(**names) for a in args]
    result = demo("--output", str(tmp_path / "out"), *args)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if "--output" not in args:
        assert not (tmp_path / "out").exists(), "nothing is written before the inputs are checked"


def test_predictor_from_python(weights, images):
    cfg = load_config(DEMO, [f"train.init_checkpoint={weights}", "train.device=cpu"])
    predictor = Predictor(cfg)
    image = cv2.imread(images[0])
    instances = predictor(image)["instances"]
    assert instances.image_size == image.shape[:2]
    assert instances.pred_masks.shape[1:] == image.shape[:2]
    with pytest.raises(ValueError, match="expects an HxWx3 BGR image"):
        predictor(image[:, :, 0])
    with pytest.raises(ValueError, match="expects a non-empty image; got one of 0 x 0 pixels"):
        predictor(image[:0, :0])


def run_demo(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "run_demo.py"), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=1800)


def test_make_demo_refuses_an_unknown_model_in_one_line(tmp_path):
    result = run_demo("maskrcnn", "--output", str(tmp_path / "out"))
    assert result.returncode != 0
    assert result.stderr == "run_demo.py: error: unknown MODEL 'maskrcnn'; choose one of: scnet, mnc, htc, cascade\n"
    assert not (tmp_path / "out").exists()


def test_demo_models_have_their_configs():
    spec = importlib.util.spec_from_file_location("run_demo_tool", os.path.join(ROOT, "tools", "run_demo.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert sorted(tool.MODELS) == ["cascade", "htc", "mnc", "scnet"]
    for model in tool.MODELS:
        cfg = load_config(tool.parse_args([model]).config)
        assert cfg.dataloader.train.dataset.names == "cascades_shapes_train"
        assert cfg.dataloader.test.dataset.names == "cascades_shapes_val"
        assert (cfg.train.max_iter, cfg.train.seed) == (600, 1), model


def test_run_report_of_a_model(tmp_path, weights):
    from cascades.engine.run_report import CAPTION, CONTACT_SHEET, GAP, TILE, write_run_report

    cfg = load_config(DEMO, [f"train.output_dir={tmp_path}", "train.device=cpu"])
    # No metrics.json: only the contact sheet, of 3 pairs in 2 rows of 2.
    assert write_run_report(cfg, num_images=3, score_threshold=0.0, weights=weights) == [str(tmp_path / CONTACT_SHEET)]
    sheet = cv2.imread(str(tmp_path / CONTACT_SHEET))
    assert sheet.shape == (2 * (TILE + CAPTION) + GAP, 2 * 2 * TILE + GAP, 3)
    assert cfg.train.init_checkpoint == "", "the caller's config is left as it was"


@pytest.mark.slow
def test_make_demo_runs_to_the_end_and_a_rerun_reports_only_its_own_results(tmp_path):
    """A short demo (2 iterations of the MNC demo at the smoke test's size), then the same again: the
    second finds training finished, evaluates again and draws again; nothing of the first is reused."""
    out = tmp_path / "out"
    short = ["train.max_iter=2", "model.roi_heads.batch_size_per_image=16"]
    first = run_demo("mnc", "--output", str(out), *short)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "| MNC (5 stages, RoI warping) |" in first.stdout and "contact sheet" in first.stdout
    for name in ("eval_results.json", "contact_sheet.png", "training_curves.png", "model_final.pth"):
        assert (out / name).is_file(), name
    assert len(os.listdir(out / "visualizations")) == 50
    stamp = os.stat(out / "eval_results.json").st_mtime_ns
    second = run_demo("mnc", "--output", str(out), *short)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "=== Evaluating" in second.stdout
    assert os.stat(out / "eval_results.json").st_mtime_ns != stamp
    assert (out / "contact_sheet.png").is_file() and len(os.listdir(out / "visualizations")) == 50
