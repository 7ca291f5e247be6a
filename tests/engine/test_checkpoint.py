import logging
import os
import re

import pytest
import torch
from torch import nn

from cascades.engine import Checkpointer, CheckpointMismatchError
from cascades.engine.checkpoint import CheckpointReadError, check_checkpoint_file
from cascades.engine.failures import TrainingDiverged


def _model(classes=3):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(classes))


def _built(classes=3):
    model = _model(classes)
    model(torch.zeros(1, 3, 5, 5))
    return model


def test_kill_mid_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = _built()
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    real_save = torch.save

    def killed_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt

    with torch.no_grad():
        model[0].weight.add_(1)
    monkeypatch.setattr(torch, "save", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000001")
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000002")
    monkeypatch.setattr(torch, "save", real_save)

    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000001.pth")
    fresh = _built()
    assert Checkpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, saved[k])


def test_checkpoint_of_another_model_is_refused(tmp_path):
    other = nn.Sequential(nn.Linear(2, 2))
    Checkpointer(other, str(tmp_path)).save("other")
    with pytest.raises(CheckpointMismatchError, match="other.pth.*does not fit"):
        Checkpointer(_built()).load(str(tmp_path / "other.pth"))


def test_strict_loading_names_the_mismatched_tensors(tmp_path):
    Checkpointer(_built(classes=3), str(tmp_path)).save("three_classes")
    path = str(tmp_path / "three_classes.pth")
    # Training initialisation stays lenient (fine-tuning to another number of classes)...
    model = _built(classes=5)
    Checkpointer(model).load(path)
    # ...but inference and resuming need every tensor.
    with pytest.raises(CheckpointMismatchError, match=r"3\.weight: checkpoint \(3, 36\) vs model \(5, 36\)"):
        Checkpointer(_built(classes=5), strict=True).load(path)
    os.rename(path, tmp_path / "model_final.pth")
    Checkpointer(_built(classes=3), str(tmp_path)).tag_last_checkpoint("model_final.pth")
    with pytest.raises(CheckpointMismatchError):
        Checkpointer(_built(classes=5), str(tmp_path)).resume_or_load("", resume=True)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(_built()).load(str(tmp_path / "nope.pth"))


def test_detectron2_names_load_through_the_same_code(tmp_path, monkeypatch):
    """detectron2://ImageNetPretrained/... resolves to detectron2's URL, then loads like a local .pkl."""
    import pickle

    from iopath.common.file_io import HTTPURLHandler

    weights = {k: v.numpy() for k, v in _built().state_dict().items()}
    local = tmp_path / "R-50.pkl"
    with open(local, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test"}, f)
    requested = []

    def download(self, path, force=False, **kwargs):
        requested.append(path)
        return str(local)

    monkeypatch.setattr(HTTPURLHandler, "_get_local_path", download)
    model = _built()
    Checkpointer(model).load("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert requested == ["https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"]
    for k, v in model.state_dict().items():
        assert (v.numpy() == weights[k]).all()


def _damaged_copies(tmp_path):
    """An empty file, a text file, a checkpoint cut in half, and one whose data (not its zip directory)
    is overwritten."""
    Checkpointer(_built(), str(tmp_path)).save("good")
    good = (tmp_path / "good.pth").read_bytes()
    files = {"empty.pth": b"", "text.pth": b"not a checkpoint\n", "truncated.pth": good[: len(good) // 2]}
    start = good.index(b"data/0") + 100
    files["damaged.pth"] = good[:start] + bytes(len(good) // 3) + good[start + len(good) // 3:]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [str(tmp_path / name) for name in files]


def test_unreadable_checkpoints_are_named(tmp_path):
    empty, text, truncated, damaged = _damaged_copies(tmp_path)
    for path, message in [(empty, "an empty file"), (text, "truncated or not a checkpoint"),
                          (truncated, "truncated or not a checkpoint")]:
        with pytest.raises(CheckpointReadError, match=re.escape(f"Checkpoint {path!r}") + ".*" + message):
            check_checkpoint_file(path)
    check_checkpoint_file(damaged)  # the quick check reads the zip directory, not the weights
    for path in (empty, text, truncated, damaged):
        with pytest.raises(CheckpointReadError, match=re.escape(f"Checkpoint {path!r} cannot be read")):
            Checkpointer(_built()).load(path)


def test_folder_is_not_a_missing_checkpoint(tmp_path):
    checkpointer = Checkpointer(_built(), str(tmp_path))
    checkpointer.save("model_0000004")
    message = re.escape(f"Checkpoint {str(tmp_path)!r} is a folder, not a checkpoint file (its last checkpoint "
                        f"is {tmp_path / 'model_0000004.pth'})")
    with pytest.raises(CheckpointReadError, match=message):
        check_checkpoint_file(str(tmp_path))
    with pytest.raises(CheckpointReadError, match=message):
        Checkpointer(_built()).load(str(tmp_path))


def test_resume_falls_back_past_an_unreadable_checkpoint(tmp_path, caplog):
    model = _built()
    checkpointer = Checkpointer(model, str(tmp_path))
    for iteration in range(3):
        with torch.no_grad():
            model[0].weight.fill_(iteration)
        checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
    (tmp_path / "model_0000002.pth").write_bytes((tmp_path / "model_0000002.pth").read_bytes()[:100])
    fresh = _built()
    with caplog.at_level(logging.WARNING):
        assert Checkpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
    assert (fresh[0].weight == 1).all()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"Resuming from {tmp_path / 'model_0000001.pth'}, the latest readable checkpoint: "
        f"Checkpoint '{tmp_path / 'model_0000002.pth'}' cannot be read")
    # A last_checkpoint that names nothing: the latest periodic checkpoint that can be read.
    (tmp_path / "last_checkpoint").write_text("")
    assert Checkpointer(_built(), str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 1
    for name in ("model_0000000.pth", "model_0000001.pth"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(CheckpointReadError, match="No checkpoint in .* can be read to resume"):
        Checkpointer(_built(), str(tmp_path)).resume_or_load("", resume=True)


def test_non_finite_weights_are_not_saved(tmp_path):
    model = _built()
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    with torch.no_grad():
        model[1].running_var[2] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"^training diverged at iteration 2: 1 weight tensor is non-finite, "
                                               r"in 1; model_0000002.pth was not saved$"):
        checkpointer.save("model_0000002", iteration=2)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000001.pth")
