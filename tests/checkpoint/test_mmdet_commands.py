"""An mmdetection checkpoint file given to the commands as users run them: train_net.py (evaluation and
fine-tuning on another label set) and tools/demo.py, through ``train.init_checkpoint=mmdet://<file>``,
and a converted file from tools/convert_mmdet_checkpoint.py. Full-size Cascade Mask R-CNN R-50-FPN
weights (seeded, tests/parity/mmdet_seeded.py) on small images; subprocesses, so slow."""
import os
import subprocess
import sys

import pytest
import torch

from cascades.checkpoint import CLASS_SPECIFIC_KEYS
from cascades.data.default_shapes import generate_split
from cascades.engine.config import load_config
from cascades.engine.smoke import smoke_overrides

from mmdet_samples import CONFIGS, ROOT

pytestmark = pytest.mark.slow

CONFIG = os.path.join(CONFIGS, "cascade_mask_rcnn_R_50_FPN_1x.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(script, *args, cache):
    env = {**ENV, "CASCADES_CACHE": str(cache)}
    return subprocess.run([sys.executable, os.path.join(ROOT, *script), *args], cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)


def small_run(out, checkpoint, *overrides):
    """Seconds-long overrides (cascades.engine.smoke), keeping the model's FrozenBN (the checkpoint fills it)."""
    cfg = load_config(CONFIG, list(overrides))
    smoke = [o for o in smoke_overrides(cfg, str(out), max_iter=1)
             if not o.endswith("=GN") and not o.startswith("train.init_checkpoint=")]
    return ["--config-file", CONFIG, *smoke, *overrides, f"train.init_checkpoint={checkpoint}"]


def test_eval_only_takes_an_mmdet_path(tmp_path, seeded_file, cache):
    source, _ = seeded_file
    result = run(["train_net.py"], "--eval-only", *small_run(tmp_path, f"mmdet://{source}"), cache=cache)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "copypaste: Task: segm" in result.stdout
    assert len(os.listdir(cache / "converted")) == 1


def test_eval_only_refuses_another_class_count_in_one_line(tmp_path, seeded_file, cache):
    source, _ = seeded_file
    result = run(["train_net.py"], "--eval-only",
                 *small_run(tmp_path, f"mmdet://{source}", "model.roi_heads.num_classes=5"), cache=cache)
    assert result.returncode != 0
    assert "has another label set (80 classes vs 5 in the model)" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stdout


def test_fine_tuning_on_another_label_set_starts_from_the_converted_weights(tmp_path, seeded_file, cache):
    source, converted = seeded_file
    result = run(["train_net.py"], *small_run(tmp_path, f"mmdet://{source}", "model.roi_heads.num_classes=5"),
                 cache=cache)
    assert result.returncode == 0, result.stdout[-3000:]
    assert result.stdout.count("(80 classes vs 5 in the model)") == 1, result.stdout[-3000:]
    trained = torch.load(tmp_path / "model_final.pth", weights_only=False)["model"]
    # The stem and res2 are frozen (detectron2's freeze_at=2): exactly the converted weights after a step.
    frozen = [k for k in converted if k.startswith(("backbone.bottom_up.stem.", "backbone.bottom_up.res2."))]
    assert frozen and all(torch.equal(trained[k], converted[k]) for k in frozen)
    assert trained["roi_heads.box_predictor.0.cls_score.weight"].shape[0] == 6
    assert not any(CLASS_SPECIFIC_KEYS.fullmatch(k) and trained[k].shape == converted[k].shape for k in converted)


def test_unconverted_file_is_refused_naming_the_mmdet_path(tmp_path, seeded_file, cache):
    source, _ = seeded_file
    result = run(["train_net.py"], *small_run(tmp_path, source), cache=cache)
    assert result.returncode != 0
    assert f"load it as mmdet://{source} to convert it" in result.stdout, result.stdout[-3000:]
    assert "Traceback" not in result.stdout and not (tmp_path / "model_final.pth").exists()


@pytest.mark.parametrize("how", ["mmdet path", "converted file"])
def test_demo_draws_with_mmdet_weights(tmp_path, seeded_file, cache, how):
    source, _ = seeded_file
    if how == "mmdet path":
        checkpoint = f"mmdet://{source}"
    else:
        checkpoint = str(tmp_path / "converted.pth")
        done = run(["tools", "convert_mmdet_checkpoint.py"], source, "--config-file", CONFIG,
                   "--output", checkpoint, cache=cache)
        assert done.returncode == 0, done.stdout[-3000:]
    image = os.path.join(generate_split("cascades_shapes_val"), "images")
    image = os.path.join(image, sorted(os.listdir(image))[0])
    result = run(["tools", "demo.py"], "--config-file", CONFIG, "--input", image, "--output", str(tmp_path / "out"),
                 "--confidence-threshold", "0", f"train.init_checkpoint={checkpoint}", "train.device=cpu", cache=cache)
    assert result.returncode == 0, result.stdout[-3000:]
    assert os.listdir(tmp_path / "out") == [os.path.basename(image)]
