"""Training runs that cannot go on end with one message: divergence and unreadable training images."""

import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cascades.engine.failures import (BOX_CLIP_ASSERTION, DivergenceChecks, MapperNamingTheImage,
                                      TrainingDiverged, TrainingImageError)
from cascades.layers import NonFiniteBoxError
from detectron2.data import DatasetMapper
from detectron2.engine import SimpleTrainer
from detectron2.structures import Boxes


class Trainer(DivergenceChecks, SimpleTrainer):
    pass


class Model(nn.Module):
    """Two losses; ``fail(iteration, model)`` may return an exception to raise or factors of the losses."""

    def __init__(self, fail):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.fail = fail
        self.calls = 0

    def forward(self, data):
        self.calls += 1
        outcome = self.fail(self.calls - 1, self)
        if isinstance(outcome, BaseException):
            raise outcome
        out = self.linear(data)
        losses = {"loss_a": out.abs().mean(), "loss_b": out.pow(2).mean()}
        for name, value in (outcome or {}).items():
            losses[name] = losses[name] * value
        return losses


def train(fail, iterations=5, lr=0.1):
    model = Model(fail)
    data = iter(lambda: torch.ones(4, 2), None)
    trainer = Trainer(model, data, torch.optim.SGD(model.parameters(), lr=lr))
    trainer.train(0, iterations)
    return model


def test_non_finite_losses_are_named_with_their_iteration(caplog):
    with caplog.at_level(logging.INFO), pytest.raises(TrainingDiverged) as e:
        train(lambda i, model: {"loss_b": float("nan") if i == 3 else 1.0})
    assert str(e.value) == "training diverged at iteration 3: non-finite losses loss_b=nan"
    assert e.value.iteration == 3
    # detectron2 logs the traceback of what ends training; a divergence says all in its message.
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


def test_box_clipping_assertion_becomes_the_same_message():
    def fail(i, model):
        if i == 2:
            Boxes(torch.tensor([[0.0, 0.0, float("inf"), 4.0]])).clip((8, 8))
    with pytest.raises(TrainingDiverged, match=r"^training diverged at iteration 2: non-finite predicted boxes "
                                               rf"\(detectron2's Boxes.clip: {BOX_CLIP_ASSERTION}\)$"):
        train(fail)


def test_non_finite_weights_are_named_after_a_failure():
    def fail(i, model):
        if i == 3:  # as if the update of iteration 2 had overflowed
            with torch.no_grad():
                model.linear.weight[0, 1] = float("inf")
                model.linear.bias.fill_(float("nan"))
            return KeyError("anything the model raises once its weights are broken")
    with pytest.raises(TrainingDiverged, match=r"iteration 3: KeyError: .*; 2 weight tensors are non-finite, "
                                               r"in linear$"):
        train(fail)


def test_non_finite_box_of_the_warp_is_a_divergence():
    with pytest.raises(TrainingDiverged, match=r"iteration 1: roi_warp: rois\[0\] has a non-finite box"):
        train(lambda i, model: NonFiniteBoxError("roi_warp: rois[0] has a non-finite box (nan, 1, 2, 3)") if i == 1 else None)


def test_other_errors_pass_through():
    with pytest.raises(KeyError, match="a bug"):
        train(lambda i, model: KeyError("a bug") if i == 1 else None)


def test_unreadable_training_image_is_named(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])  # truncated
    mapper = MapperNamingTheImage(DatasetMapper(is_train=True, augmentations=[], image_format="BGR"))
    dataset = [{"file_name": str(path), "height": 64, "width": 64, "annotations": []}]
    message = f"training image '{path}' cannot be read: OSError: "  # then PIL's words, e.g. Truncated File Read
    with pytest.raises(TrainingImageError, match=f"^{re.escape(message)}"):
        mapper(dataset[0])
    # From a DataLoader worker, the main process gets the same one-line message.
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=lambda b: [mapper(d) for d in b])
    with pytest.raises(TrainingImageError) as e:
        next(iter(loader))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_other_mapper_errors_keep_their_traceback_and_name_the_image():
    def broken(dataset_dict):
        raise KeyError("annotations")
    with pytest.raises(KeyError) as e:
        MapperNamingTheImage(broken)({"file_name": "a.jpg"})
    assert e.value.__notes__ == ["(while mapping training image 'a.jpg')"]
