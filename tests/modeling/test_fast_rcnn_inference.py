"""The cascades' box inference is detectron2's, with only its per-class NMS swapped for the top-k NMS
(equality with detectron2's results: tests/layers/test_nms.py)."""
import importlib

import pytest
import torch

from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image

from cascades.modeling import SemanticCascadeROIHeads
from cascades.modeling.fast_rcnn_inference import fast_rcnn_inference, with_globals

module = importlib.import_module("cascades.modeling.fast_rcnn_inference")


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
    # The cascade heads' _forward_box is detectron2's code, with this inference.
    assert SemanticCascadeROIHeads._forward_box.__code__ is CascadeROIHeads._forward_box.__code__
    assert SemanticCascadeROIHeads._forward_box.__globals__["fast_rcnn_inference"] is fast_rcnn_inference


def test_with_globals_refuses_a_name_the_function_does_not_look_up():
    with pytest.raises(RuntimeError, match=r"fast_rcnn_inference_single_image does not look up \['nms'\]"):
        with_globals(fast_rcnn_inference_single_image, nms=None)
