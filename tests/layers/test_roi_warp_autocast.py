"""RoI warp under torch.autocast: the op's autocast kernels (csrc/roi_warp/roi_warp_autocast.cpp) run it
in float32 on the upcast input and rois and return the input's dtype, as torchvision's roi_align does;
gradients flow back through the casts; the rois keep their float32 precision."""

import pytest
import torch

from cascades.layers import RoIWarp, roi_warp

from test_roi_warp import needs_cuda, random_rois

LOW_PRECISION = [torch.bfloat16, torch.float16]


def features_and_rois(dtype, device="cpu"):
    """Features already rounded to ``dtype``, and float32 boxes whose coordinates ``dtype`` cannot hold
    (bfloat16 keeps 8 bits: 37.3 would become 37.25), both leaves that require gradients."""
    x = torch.randn(2, 6, 13, 17, device=device).to(dtype).requires_grad_(True)
    rois = random_rois(12, 2, 13, 17, 0.5, dtype=torch.float32).to(device).requires_grad_(True)
    return x, rois


def warp_and_grads(x, rois, autocast_dtype=None, module=False, **kwargs):
    """Output and gradients of a weighted sum of the warp, under autocast when ``autocast_dtype``."""
    call = RoIWarp(spatial_scale=0.5, **kwargs) if module else (lambda f, r: roi_warp(f, r, spatial_scale=0.5, **kwargs))
    with torch.autocast(x.device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        out = call(x, rois)
    # Weights that float16 and bfloat16 hold exactly: the output gradient is then the same in every dtype.
    weights = torch.linspace(-1, 1, out.numel(), device=x.device).view_as(out).to(torch.bfloat16).float()
    grads = torch.autograd.grad((out.float() * weights).sum(), (x, rois))
    return out, grads


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("kwargs", [dict(output_size=7), dict(output_size=(8, 6), pool_size=2, aligned=False)])
@pytest.mark.parametrize("module", [False, True])
def test_cpu_autocast_runs_float32_and_returns_input_dtype(dtype, kwargs, module):
    x, rois = features_and_rois(dtype)
    out, (grad_x, grad_rois) = warp_and_grads(x, rois, autocast_dtype=dtype, module=module, **kwargs)
    x32 = x.detach().float().requires_grad_(True)
    expected, (expected_grad_x, expected_grad_rois) = warp_and_grads(x32, rois, **kwargs)

    assert out.dtype == dtype
    # Bit for bit the float32 op (float32 boxes, not rounded to `dtype`), rounded once at the end.
    torch.testing.assert_close(out, expected.to(dtype), atol=0, rtol=0)
    # The gradients reach both leaves: the features' through the casts, in their own dtype.
    assert grad_x.dtype == dtype and grad_rois.dtype == torch.float32
    torch.testing.assert_close(grad_x, expected_grad_x.to(dtype), atol=0, rtol=0)
    torch.testing.assert_close(grad_rois, expected_grad_rois, atol=0, rtol=0)
    assert grad_rois[:, 1:].abs().sum() > 0


def test_autocast_never_downcasts_float64():
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64)
    rois = random_rois(5, 1, 9, 9, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_warp(x, rois, 5)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, roi_warp(x, rois, 5), atol=0, rtol=0)


def test_low_precision_on_the_cpu_needs_autocast():
    x, rois = features_and_rois(torch.bfloat16)
    with pytest.raises(TypeError, match="input dtype must be one of"):
        roi_warp(x, rois.to(torch.bfloat16), 7)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        with pytest.raises(TypeError, match="input dtype must be one of"):
            RoIWarp(7, 1.0)(x, rois)


@pytest.mark.parametrize("pool_size", [1, 2])
def test_opcheck_under_autocast(pool_size):
    x = torch.randn(2, 3, 9, 11, dtype=torch.bfloat16, requires_grad=True)
    rois = random_rois(6, 2, 9, 11, dtype=torch.float32).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.library.opcheck(torch.ops.cascades.roi_warp_forward.default, (x, rois, 0.5, 4, 3, pool_size, True, 0.5))


@needs_cuda
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_cuda_autocast_runs_float32_and_returns_input_dtype(dtype):
    x, rois = features_and_rois(dtype, device="cuda")
    out, (grad_x, grad_rois) = warp_and_grads(x, rois, autocast_dtype=dtype, output_size=7)
    x32 = x.detach().float().requires_grad_(True)
    expected, (expected_grad_x, expected_grad_rois) = warp_and_grads(x32, rois, output_size=7)
    assert out.dtype == dtype and grad_x.dtype == dtype
    torch.testing.assert_close(out, expected.to(dtype), atol=0, rtol=0)
    # Atomic adds make the CUDA backward's sums order-dependent.
    torch.testing.assert_close(grad_x, expected_grad_x.to(dtype))
    torch.testing.assert_close(grad_rois, expected_grad_rois, atol=1e-4, rtol=1e-4)
