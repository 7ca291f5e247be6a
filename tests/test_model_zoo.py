import glob
import os

import pytest
import torch

import cascades.model_zoo as model_zoo
from cascades.engine import Checkpointer, CheckpointMismatchError
from cascades.model_zoo.model_zoo import _ModelZooUrls

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = "DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py"


def test_every_config_is_in_the_model_zoo():
    names = [os.path.relpath(p, os.path.join(ROOT, "configs"))
             for p in glob.glob(os.path.join(ROOT, "configs", "*", "*.py")) if "/common/" not in p]
    assert DEMO in names
    for name in names:
        assert os.path.samefile(model_zoo.get_config_file(name), os.path.join(ROOT, "configs", name))
    with pytest.raises(RuntimeError, match="'Nope/x.py' is not in the model zoo"):
        model_zoo.get_config_file("Nope/x.py")


def test_unpublished_checkpoints_are_refused():
    assert "train" in model_zoo.get_config(DEMO)
    with pytest.raises(RuntimeError, match="No published checkpoint for"):
        model_zoo.get_checkpoint_url(DEMO)
    with pytest.raises(RuntimeError, match="No published checkpoint for"):
        model_zoo.get(DEMO, trained=True)


def test_get_trained_loads_the_published_weights(tmp_path, monkeypatch):
    source = model_zoo.get(DEMO, device="cpu")
    Checkpointer(source, str(tmp_path)).save("model_final")
    monkeypatch.setitem(_ModelZooUrls.CONFIG_PATH_TO_URL, DEMO[:-3], str(tmp_path / "model_final.pth"))
    assert model_zoo.get_config(DEMO, trained=True).train.init_checkpoint == str(tmp_path / "model_final.pth")
    model = model_zoo.get(DEMO, trained=True, device="cpu")
    assert model.training
    for (k, a), b in zip(source.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k


def test_published_weights_must_fit(tmp_path, monkeypatch):
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pth")
    monkeypatch.setitem(_ModelZooUrls.CONFIG_PATH_TO_URL, DEMO[:-3], str(tmp_path / "other.pth"))
    with pytest.raises(CheckpointMismatchError, match="does not fit this model"):
        model_zoo.get(DEMO, trained=True, device="cpu")


def test_built_package_carries_the_configs(tmp_path):
    """A non-editable install has no configs/ beside it: setup.py's build_py copies them into
    cascades/model_zoo/configs, and the model zoo of the built package finds and loads them there."""
    import subprocess
    import sys

    build = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert build.returncode == 0, build.stdout
    check = ("import cascades.model_zoo as mz; print(mz.get_config_file({0!r})); "
             "print(mz.get_config({1!r}).model.backbone.bottom_up.stages.depth)").format(
                 DEMO, "COCO-InstanceSegmentation/scnet_R_101_FPN_20e.py")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", check], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.returncode == 0, run.stderr
    path, depth = run.stdout.split()
    assert path == str(tmp_path / "cascades" / "model_zoo" / "configs" / DEMO) and depth == "101"
