"""The cascades' box inference is detectron2's, with only its per-class NMS swapped for the top-k NMS
(equality with detectron2's results: tests/layers/test_nms.py)."""
import importlib
import inspect

import pytest
import torch

from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image

from cascades.modeling.fast_rcnn_inference import fast_rcnn_inference, with_globals

module = importlib.import_module("cascades.modeling.fast_rcnn_inference")
heads_module = importlib.import_module("cascades.modeling.semantic_cascade_roi_heads")


def test_detectron2s_code_runs_with_the_topk_nms(monkeypatch):
    calls = []
    real = module.batched_nms_topk
    monkeypatch.setattr(module, "batched_nms_topk", lambda *args: calls.append(args[-1]) or real(*args))
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(50, 2, generator=g) * 40], dim=1)
    scores = torch.softmax(torch.randn(50, 4, generator=g), dim=1)
    (result,), _ = fast_rcnn_inference([boxes], [scores], [(160, 160)], 0.05, 0.5, 7)
    assert calls == [7] and len(result) == 7


def test_the_cascade_heads_run_detectron2s_forward_box_with_this_inference(roi_heads_and_batch, monkeypatch):
    callers = []

    def spy(*args):
        callers.append([frame.frame.f_code for frame in inspect.stack()])
        return fast_rcnn_inference(*args)

    monkeypatch.setattr(heads_module, "fast_rcnn_inference", spy)
    heads, (features, proposals, _) = roi_heads_and_batch("scnet")
    heads.eval()
    with torch.no_grad():
        heads(None, features, proposals)
    (stack,) = callers
    assert CascadeROIHeads._forward_box.__code__ in stack


def test_with_globals_refuses_a_name_the_function_does_not_look_up():
    with pytest.raises(RuntimeError, match=r"fast_rcnn_inference_single_image does not look up \['nms'\]"):
        with_globals(fast_rcnn_inference_single_image, nms=None)
