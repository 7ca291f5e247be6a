"""Each exported model's detections equal the eager model's on real photos of other sizes than the
sample it was exported with: boxes, scores, classes and mask probabilities, to the tolerances that
docs/EXPORT.md states (none for torch.export and TorchScript, which run the same CPU kernels;
onnxruntime's own kernels round differently)."""
import pytest
import torch

from cascades.export import OUTPUT_NAMES, export, inference_adapter, load

from export_helpers import photos, random_model

# Largest absolute difference allowed per output; classes and image sizes are compared exactly.
TOLERANCES = {
    "torch_export": {"pred_boxes": 0.0, "scores": 0.0, "pred_masks": 0.0},
    "torchscript": {"pred_boxes": 0.0, "scores": 0.0, "pred_masks": 0.0},
    # pixels; probabilities; probabilities
    "onnx": {"pred_boxes": 1e-3, "scores": 1e-5, "pred_masks": 1e-4},
}
EXTENSIONS = {"torch_export": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}


def assert_same_detections(expected, actual, tolerances):
    for name, e, a in zip(OUTPUT_NAMES, expected, actual, strict=True):
        assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)}, eager {tuple(e.shape)}"
        if name in tolerances:
            torch.testing.assert_close(a, e, atol=tolerances[name], rtol=0, msg=lambda m: f"{name}: {m}")
        else:
            assert torch.equal(a.to(e.dtype), e), name


def check_export(name, fmt, tmp_path, num_photos=3):
    images = photos(num_photos)
    assert len({tuple(i.shape) for i in images}) > 1 or len(images) == 1
    model = random_model(name, images)
    eager = inference_adapter(model, images[0])
    path = str(tmp_path / f"{name}{EXTENSIONS[fmt]}")
    export(model, images[0], fmt, path)
    run = load(path)
    for image in images:
        with torch.no_grad():
            expected = eager(image)
        assert len(expected[0]) > 0, "no detections to compare"
        assert_same_detections(expected, run(image), TOLERANCES[fmt])


# About 20 s each here: the two papers' models in the default suite, the baselines with the slow ones.
@pytest.mark.parametrize(
    "name", ["scnet", "htc", pytest.param("cascade_semantic", marks=pytest.mark.slow),
             pytest.param("cascade", marks=pytest.mark.slow)]
)
def test_torchscript_tracing_equals_eager(name, tmp_path):
    check_export(name, "torchscript", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scnet", "htc", "cascade_semantic", "cascade"])
def test_torch_export_equals_eager(name, tmp_path):
    check_export(name, "torch_export", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scnet", "htc", "cascade_semantic", "cascade"])
def test_onnx_equals_eager(name, tmp_path):
    check_export(name, "onnx", tmp_path)
