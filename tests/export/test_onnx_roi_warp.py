"""The ONNX translation of the RoI warp (RoiAlign + MaxPool) computes the op's function on onnxruntime,
including torchvision's rules that ONNX shares: aligned=False widens a box narrower than one cell to one
cell, and a sample beyond [-1, H] is zero; sample_at="start" is refused in one line."""
import numpy as np
import pytest
import torch

from cascades.export import UnsupportedExport
from cascades.export.onnx_roi_warp import ONNX_TRANSLATIONS, check_onnx_roi_warp
from cascades.layers import RoIWarp

onnxruntime = pytest.importorskip("onnxruntime")


class _Warp(torch.nn.Module):
    """Both outputs of the op: the features and the position of each window's maximum."""

    def __init__(self, aligned, pool_size, sample_offset=0.5):
        super().__init__()
        self.args = (0.25, 7, 7, pool_size, aligned, sample_offset)

    def forward(self, features, rois):
        return torch.ops.cascades.roi_warp_forward(features, rois, *self.args)


def _rois(num, seed=0):
    """Boxes over and beyond a 24 x 20 map at scale 1/4, many narrower than one cell (4 px)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num, 2, generator=g) * 120 - 12
    wh = torch.rand(num, 2, generator=g) ** 4 * 60
    return torch.cat([torch.randint(0, 2, (num, 1), generator=g).float(), xy, xy + wh], dim=1)


def _onnx_session(module, inputs, path):
    """The module exported to ONNX (the number of RoIs dynamic) and an onnxruntime session of it."""
    program = torch.onnx.export(module, inputs, dynamo=True, custom_translation_table=ONNX_TRANSLATIONS,
                                dynamic_shapes=({}, {0: torch.export.Dim("rois")}), verbose=False)
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return program, lambda *xs: session.run(None, {n: x.numpy() for n, x in zip(names, xs)})


def _run_onnx(module, inputs, path):
    program, run = _onnx_session(module, inputs, path)
    return program, run(*inputs)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("pool_size", [1, 2])
def test_roi_align_and_max_pool_equal_the_op(aligned, pool_size, tmp_path):
    features = torch.randn(2, 8, 20, 24, generator=torch.Generator().manual_seed(1))
    rois = _rois(300)
    assert ((rois[:, 3] - rois[:, 1]) * 0.25 < 1).sum() > 50  # boxes narrower than a cell are tested
    program, run = _onnx_session(_Warp(aligned, pool_size), (features, rois), tmp_path / "warp.onnx")
    out, argmax = run(features, rois)
    ops = [node.op_type for node in program.model_proto.graph.node]
    assert "RoiAlign" in ops and ("MaxPool" in ops) == (pool_size > 1)
    expected, expected_argmax = _Warp(aligned, pool_size)(features, _rois(300))
    # float32 rounding of onnxruntime's own bilinear weights; a rule that differed would differ by O(1).
    np.testing.assert_allclose(out, expected.numpy(), rtol=0, atol=5e-5)
    # Another number of boxes through the same graph.
    other = _rois(40, seed=2)
    np.testing.assert_allclose(run(features, other)[0], _Warp(aligned, pool_size)(features, other)[0].numpy(),
                               rtol=0, atol=5e-5)
    if pool_size == 1:
        assert argmax.size == 0 and expected_argmax.numel() == 0
        return
    # The position of each 2 x 2 window's maximum (for the backward pass): it points at the maximum.
    # Where two samples of a window tie up to rounding, onnxruntime's and the op's may point at either.
    grid = torch.ops.cascades.roi_warp_forward(features, rois, 0.25, 14, 14, 1, aligned, 0.5)[0]
    windows = grid.unflatten(2, (7, 2)).unflatten(4, (7, 2)).permute(0, 1, 2, 4, 3, 5).flatten(-2)
    at_argmax = windows.gather(-1, torch.from_numpy(argmax).long()[..., None])[..., 0]
    np.testing.assert_allclose(at_argmax.numpy(), expected.numpy(), rtol=0, atol=5e-5)
    assert (argmax == expected_argmax.numpy()).mean() > 0.99


def test_torchvision_rule_for_narrow_boxes_is_what_onnx_runs(tmp_path):
    """Without the widening to one cell, narrow boxes would give other values: the test above would
    notice a mode that dropped it."""
    features = torch.randn(1, 4, 20, 24, generator=torch.Generator().manual_seed(3))
    narrow = torch.tensor([[0.0, 40.0, 30.0, 41.0, 50.0]])  # 0.25 cell wide at scale 1/4
    _, (widened, _) = _run_onnx(_Warp(False, 1), (features, narrow), tmp_path / "narrow.onnx")
    _, (shifted, _) = _run_onnx(_Warp(True, 1), (features, narrow), tmp_path / "aligned.onnx")
    assert np.abs(widened - shifted).max() > 1e-2
    np.testing.assert_allclose(widened, _Warp(False, 1)(features, narrow)[0].numpy(), rtol=0, atol=5e-5)


def test_sample_at_start_is_refused_in_one_line():
    model = torch.nn.Sequential(torch.nn.Identity())
    model.add_module("warp", RoIWarp(14, 0.25, sample_at="start"))
    with pytest.raises(UnsupportedExport) as info:
        check_onnx_roi_warp(model)
    message = str(info.value)
    assert "\n" not in message and "warp (RoIWarp)" in message and "sample_at='start'" in message
    check_onnx_roi_warp(torch.nn.Sequential(RoIWarp(14, 0.25, sample_at="center")))


def test_sample_at_start_fails_the_translation(tmp_path):
    """A direct call of the op with the start offset (no RoIWarp module to check first) fails too."""
    with pytest.raises(Exception, match="sample_at='start' cannot be exported to ONNX"):
        _run_onnx(_Warp(True, 2, sample_offset=0.0), (torch.randn(1, 2, 8, 8), _rois(3)), tmp_path / "s.onnx")
