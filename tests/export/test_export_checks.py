"""What cannot be exported fails in one line naming the part, before any work; the export-safe swaps
touch one model only while exporting; an image without detections exports and runs."""
import types

import pytest
import torch

from detectron2.modeling.poolers import convert_boxes_to_pooler_format
from detectron2.modeling.roi_heads import cascade_rcnn

import cascades.modeling.semantic_cascade_roi_heads as semantic_cascade_roi_heads
from cascades.export import FORMATS, UnsupportedExport, check_exportable, export, export_safe, inference_adapter, load

from balloon_small_configs import load_balloon_small
from export_helpers import photos, random_model


def _one_line(info, *parts):
    message = str(info.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message


def _model(name, **overrides):
    from detectron2.config import instantiate

    cfg = load_balloon_small(name)
    cfg.model.roi_heads.update(overrides)
    return instantiate(cfg.model).eval()


def test_unknown_format(tmp_path):
    with pytest.raises(UnsupportedExport) as info:
        export(_model("cascade"), torch.zeros(3, 128, 128), "caffe2", str(tmp_path / "m.pb"))
    _one_line(info, "caffe2", "torch_export, onnx, torchscript")


def test_mask_rcnn_roi_heads_are_named():
    with pytest.raises(UnsupportedExport) as info:
        check_exportable(_model("mask_rcnn"), "torch_export")
    _one_line(info, "roi_heads StandardROIHeads")


def test_training_mode_is_refused():
    with pytest.raises(UnsupportedExport) as info:
        check_exportable(_model("scnet").train(), "onnx")
    _one_line(info, "training mode")


def test_not_a_detector():
    with pytest.raises(UnsupportedExport) as info:
        check_exportable(torch.nn.Conv2d(3, 3, 1), "torchscript")
    _one_line(info, "Conv2d")


def test_bad_sample_image(tmp_path):
    with pytest.raises(ValueError, match=r"float32 3 x H x W"):
        export(_model("scnet"), torch.zeros(1, 3, 128, 128), "torchscript", str(tmp_path / "m.ts"))
    assert not list(tmp_path.iterdir())


def test_data_dependent_branch_is_named_in_one_line():
    """Code that branches on a run-time value is refused naming its line (this file's, here)."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    from cascades.export.formats import _data_dependent_branch

    class Branching(torch.nn.Module):
        def forward(self, x):
            kept = x[x > 0]
            if kept.numel() == 0:
                return x
            return kept

    with pytest.raises(GuardOnDataDependentSymNode) as raised:
        torch.export.export(Branching(), (torch.randn(5),), strict=False)
    message = str(_data_dependent_branch(raised.value))
    assert "\n" not in message and "test_export_checks.py" in message and "`if kept.numel() == 0:`" in message


def test_export_safe_touches_one_model_only_while_exporting():
    model, other = _model("scnet"), _model("scnet")
    globals_before = (cascade_rcnn.fast_rcnn_inference, semantic_cascade_roi_heads.fast_rcnn_inference)
    with export_safe(model):
        assert isinstance(model.proposal_generator.predict_proposals, types.MethodType)
        assert "predict_proposals" in vars(model.proposal_generator)
        assert "predict_proposals" not in vars(other.proposal_generator)
        assert semantic_cascade_roi_heads.fast_rcnn_inference is not globals_before[1]
    for module in (model, model.proposal_generator, model.roi_heads):
        assert not {"preprocess_image", "predict_proposals", "_create_proposals_from_boxes"} & set(vars(module))
    assert (cascade_rcnn.fast_rcnn_inference, semantic_cascade_roi_heads.fast_rcnn_inference) == globals_before
    import detectron2.modeling.poolers as poolers

    assert poolers.convert_boxes_to_pooler_format is convert_boxes_to_pooler_format


@pytest.mark.parametrize(
    "fmt", ["torchscript", pytest.param("torch_export", marks=pytest.mark.slow),
            pytest.param("onnx", marks=pytest.mark.slow)]
)
def test_image_without_detections(fmt, tmp_path):
    """A score threshold no class probability passes: the exported model returns no detections, like
    the eager model, instead of failing on empty tensors."""
    images = photos(1)
    model = random_model("scnet", images)
    for predictor in model.roi_heads.box_predictor:
        predictor.test_score_thresh = 1.0
    path = str(tmp_path / f"m{FORMATS[fmt]}")
    export(model, images[0], fmt, path)
    with torch.no_grad():
        expected = inference_adapter(model, images[0])(images[0])
    outputs = load(path)(images[0])
    assert len(expected[0]) == 0
    assert [tuple(o.shape) for o in outputs] == [tuple(e.shape) for e in expected]
