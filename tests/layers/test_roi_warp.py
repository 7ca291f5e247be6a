"""RoI warp op: forward vs torchvision, gradients vs gradcheck and a pure-PyTorch reference, edge cases,
torch.library checks, torch.compile, bad input, and CPU/CUDA parity (skipped without a GPU)."""

import pytest
import torch
import torchvision

from cascades.layers import RoIWarp, roi_warp
from cascades.layers.roi_warp_reference import roi_warp_reference

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def random_rois(num, batch, height, width, scale=1.0, seed=0, dtype=torch.float64, margin=0.3):
    """Generic boxes in image coordinates, some reaching out of the map by up to `margin` of its size."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = height / scale, width / scale
    xy = torch.rand(num, 2, generator=g, dtype=torch.float64) * torch.tensor([img_w, img_h]) * (1 + 2 * margin)
    xy -= torch.tensor([img_w, img_h]) * margin
    wh = (torch.rand(num, 2, generator=g, dtype=torch.float64) * 0.8 + 0.05) * torch.tensor([img_w, img_h])
    index = torch.randint(batch, (num, 1), generator=g).to(torch.float64)
    return torch.cat([index, xy, xy + wh], dim=1).to(dtype)


def with_boxes(rois, boxes):
    """Rebuilds K x 5 rois from their fixed batch index and differentiable K x 4 boxes."""
    return torch.cat([rois[:, :1], boxes], dim=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_forward_equals_torchvision(device, dtype, aligned, scale):
    x = torch.randn(2, 5, 13, 17, dtype=dtype, device=device)
    rois = random_rois(40, 2, 13, 17, scale, dtype=dtype).to(device)
    ours = roi_warp(x, rois, (6, 7), scale, aligned=aligned)
    theirs = torchvision.ops.roi_align(x, rois, (6, 7), scale, sampling_ratio=1, aligned=aligned)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_list_of_boxes_equals_tensor_form():
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    rois = random_rois(10, 2, 9, 11)
    per_image = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    ordered = torch.cat([rois[rois[:, 0] == i] for i in range(2)])
    torch.testing.assert_close(roi_warp(x, per_image, 4), roi_warp(x, ordered, 4))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(aligned=True),
        dict(aligned=False),
        dict(aligned=True, pool_size=2),
        dict(aligned=False, pool_size=3, sample_at="start"),
        dict(aligned=True, sample_at="start"),
    ],
)
def test_gradcheck_features_and_boxes(kwargs):
    size = 6
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64, requires_grad=True)
    rois = random_rois(6, 2, 8, 10, scale=0.5, seed=1)
    boxes = rois[:, 1:].clone().requires_grad_(True)

    def fn(features, b):
        return roi_warp(features, with_boxes(rois, b), size, 0.5, **kwargs)

    assert torch.autograd.gradcheck(fn, (x, boxes), eps=1e-6, atol=1e-5)


def run_both(fn_ours, fn_ref, x, rois, seed=0):
    """Forward values and gradients w.r.t. features and boxes of both implementations."""
    results = []
    for fn in (fn_ours, fn_ref):
        xi = x.detach().clone().requires_grad_(True)
        boxes = rois[:, 1:].detach().clone().requires_grad_(True)
        out = fn(xi, with_boxes(rois, boxes))
        grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        grad = grad.to(device=out.device, dtype=out.dtype)
        out.backward(grad)
        results.append((out.detach(), xi.grad, boxes.grad))
    return results


CASES = {
    "generic": dict(num=64, margin=0.0),
    "partly_outside": dict(num=64, margin=0.6),
    "tiny": dict(num=32, tiny=True),
    "huge": dict(num=16, huge=True),
    "wholly_outside": dict(num=8, outside=True),
}


def case_rois(name, height, width, scale, dtype):
    spec = CASES[name]
    if spec.get("tiny"):
        rois = random_rois(spec["num"], 2, height, width, scale, seed=3, dtype=dtype)
        rois[:, 3:] = rois[:, 1:3] + torch.rand(spec["num"], 2, dtype=dtype) * 0.3 / scale
        return rois
    if spec.get("huge"):
        rois = random_rois(spec["num"], 2, height, width, scale, seed=4, dtype=dtype)
        rois[:, 1:3] -= 3 * width / scale
        rois[:, 3:] += 3 * width / scale
        return rois
    if spec.get("outside"):
        rois = random_rois(spec["num"], 2, height, width, scale, seed=5, dtype=dtype)
        rois[:, [1, 3]] += 2.5 * width / scale  # entirely right of the map
        return rois
    return random_rois(spec["num"], 2, height, width, scale, seed=2, dtype=dtype, margin=spec["margin"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    "kwargs",
    [dict(output_size=7), dict(output_size=(28, 28), pool_size=2), dict(output_size=(5, 6), aligned=False),
     dict(output_size=4, sample_at="start")],
)
def test_matches_reference(device, case, kwargs):
    dtype = torch.float64
    scale = 0.25
    x = torch.randn(2, 4, 12, 15, dtype=dtype, device=device)
    rois = case_rois(case, 12, 15, scale, dtype).to(device)
    ours, ref = run_both(
        lambda f, r: roi_warp(f, r, spatial_scale=scale, **kwargs),
        lambda f, r: roi_warp_reference(f, r, spatial_scale=scale, **kwargs),
        x, rois,
    )
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    if case == "wholly_outside":
        assert ours[0].abs().max() == 0 and ours[2].abs().max() == 0


def test_float32_matches_float64_reference():
    x = torch.randn(2, 8, 20, 24, dtype=torch.float64)
    rois = random_rois(50, 2, 20, 24, 0.5)
    ours = run_both(lambda f, r: roi_warp(f.float(), r.float(), 7, 0.5), lambda f, r: roi_warp_reference(f, r, 7, 0.5),
                    x, rois)
    for a, b in zip(*ours):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_no_rois(device):
    x = torch.randn(2, 3, 8, 8, device=device, requires_grad=True)
    rois = torch.zeros(0, 5, device=device, requires_grad=True)
    out = roi_warp(x, rois, (7, 5), pool_size=None)
    assert out.shape == (0, 3, 7, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and x.grad.abs().sum() == 0
    assert rois.grad.shape == (0, 5)
    assert roi_warp(x, rois, 14, pool_size=2).shape == (0, 3, 7, 7)


def test_batch_index_gets_no_gradient():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    rois = random_rois(5, 2, 8, 8).requires_grad_(True)
    roi_warp(x, rois, 4).sum().backward()
    assert rois.grad[:, 0].abs().sum() == 0
    assert rois.grad[:, 1:].abs().sum() > 0


def test_non_contiguous_inputs():
    base = torch.randn(2, 12, 15, 6, dtype=torch.float64)
    x = base.permute(0, 3, 1, 2)  # N x C x H x W view, not contiguous
    rois_base = random_rois(20, 2, 12, 15).t().contiguous()
    rois = rois_base.t()  # K x 5 view, not contiguous
    assert not x.is_contiguous() and not rois.is_contiguous()
    ours, ref = run_both(lambda f, r: roi_warp(f, r, 5), lambda f, r: roi_warp_reference(f, r, 5), x, rois)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    x_last = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(roi_warp(x_last, rois, 5), roi_warp(x.contiguous(), rois.contiguous(), 5))


def test_pool_size_equals_warp_then_max_pool():
    x = torch.randn(1, 4, 16, 16, dtype=torch.float64)
    rois = random_rois(12, 1, 16, 16)
    warped = roi_warp(x, rois, 28)
    torch.testing.assert_close(roi_warp(x, rois, 28, pool_size=2), torch.nn.functional.max_pool2d(warped, 2))
    assert roi_warp(x, rois, (12, 9), pool_size=3).shape == (12, 4, 4, 3)


def test_module_matches_function():
    x = torch.randn(2, 3, 10, 10)
    rois = random_rois(7, 2, 10, 10, dtype=torch.float32)
    module = RoIWarp((14, 14), spatial_scale=1.0, pool_size=2)
    torch.testing.assert_close(module(x, rois), roi_warp(x, rois, 14, 1.0, pool_size=2))
    assert "pool_size=2" in repr(module)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pool_size", [1, 2])
def test_opcheck(device, pool_size):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, device=device, requires_grad=True)
    rois = random_rois(6, 2, 9, 11).to(device).requires_grad_(True)
    args = (x, rois, 0.5, 4, 3, pool_size, True, 0.5)
    torch.library.opcheck(torch.ops.cascades.roi_warp_forward.default, args)
    out, argmax = torch.ops.cascades.roi_warp_forward(*args)
    backward_args = (torch.randn_like(out), x.detach(), rois.detach(), argmax, 0.5, 4, 3, pool_size, True, 0.5)
    torch.library.opcheck(torch.ops.cascades.roi_warp_backward.default, backward_args)


def test_torch_compile_matches_eager():
    torch._dynamo.reset()
    x = torch.randn(2, 4, 10, 12, requires_grad=True)
    rois = random_rois(9, 2, 10, 12, dtype=torch.float32).requires_grad_(True)

    def loss(features, r):
        return (roi_warp(features, r, 14, 0.5, pool_size=2) ** 2).sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager_value = loss(x, rois)
    eager_grads = torch.autograd.grad(eager_value, (x, rois))
    compiled_value = compiled(x, rois)
    compiled_grads = torch.autograd.grad(compiled_value, (x, rois))
    torch.testing.assert_close(compiled_value, eager_value)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x, r: roi_warp(x, r[:, :4], 7), ValueError, "rois must be a K x 5"),
        (lambda x, r: roi_warp(x, r[0], 7), ValueError, "rois must be a K x 5"),
        (lambda x, r: roi_warp(x, r.double(), 7), TypeError, "rois dtype torch.float64 must equal input dtype"),
        (lambda x, r: roi_warp(x.half(), r.half(), 7), TypeError, "input dtype must be one of"),
        (lambda x, r: roi_warp(x.int(), r.int(), 7), TypeError, "input dtype must be one of"),
        (lambda x, r: roi_warp(x[0], r, 7), ValueError, "input must be N x C x H x W"),
        (lambda x, r: roi_warp(x, r, 0), ValueError, "output_size must be >= 1"),
        (lambda x, r: roi_warp(x, r, (7, -1)), ValueError, "output_size must be >= 1"),
        (lambda x, r: roi_warp(x, r, 7.5), TypeError, "output_size must be an int"),
        (lambda x, r: roi_warp(x, r, 7, pool_size=2), ValueError, "must be divisible by pool_size"),
        (lambda x, r: roi_warp(x, r, 8, pool_size=0), ValueError, "pool_size must be"),
        (lambda x, r: roi_warp(x, r, 8, sample_at="corner"), ValueError, "sample_at must be one of"),
        (lambda x, r: roi_warp(x, r.to("meta"), 7), ValueError, "rois are on meta but input is on cpu"),
        (lambda x, r: roi_warp(x, [r[:, 1:]], 7), ValueError, "one box tensor per image"),
        (lambda x, r: roi_warp(x, "boxes", 7), TypeError, "rois must be a Tensor"),
    ],
)
def test_bad_arguments(call, error, match):
    x = torch.randn(2, 3, 8, 8)
    rois = random_rois(4, 2, 8, 8, dtype=torch.float32)
    with pytest.raises(error, match=match):
        call(x, rois)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda r: r.__setitem__((1, 0), 2.0), r"rois\[1, 0\] = 2 is not a batch index in \[0, 2\)"),
        (lambda r: r.__setitem__((1, 0), -1.0), r"is not a batch index"),
        (lambda r: r.__setitem__((2, 0), 0.5), r"rois\[2, 0\] = 0.5 is not a batch index"),
        (lambda r: r.__setitem__((3, 2), float("nan")), r"rois\[3\] has a non-finite box"),
        (lambda r: r.__setitem__((0, 3), float("inf")), r"rois\[0\] has a non-finite box"),
    ],
)
def test_bad_roi_values(device, edit, match):
    x = torch.randn(2, 3, 8, 8, device=device)
    rois = random_rois(4, 2, 8, 8, dtype=torch.float32)
    edit(rois)
    with pytest.raises(ValueError, match=match):
        roi_warp(x, rois.to(device), 7)


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), 0.0, -0.25])
def test_spatial_scale_must_be_finite_and_positive(scale):
    x = torch.randn(2, 3, 8, 8)
    rois = random_rois(4, 2, 8, 8, dtype=torch.float32)
    with pytest.raises(ValueError, match=f"spatial_scale must be a finite number > 0.*got {scale}"):
        roi_warp(x, rois, 7, scale)
    with pytest.raises(ValueError, match="spatial_scale must be a finite number > 0"):
        RoIWarp(7, scale)
    # Direct calls of the compiled op check it too.
    with pytest.raises(ValueError, match=f"spatial_scale must be a finite number > 0, got {scale:g}"):
        torch.ops.cascades.roi_warp_forward(x, rois, scale, 7, 7, 1, True, 0.5)
    out, argmax = torch.ops.cascades.roi_warp_forward(x, rois, 0.5, 4, 4, 2, True, 0.5)
    with pytest.raises(ValueError, match="spatial_scale must be a finite number > 0"):
        torch.ops.cascades.roi_warp_backward(torch.ones_like(out), x, rois, argmax, scale, 4, 4, 2, True, 0.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(spatial_scale="0.25"), "spatial_scale must be a finite number > 0.*got '0.25'"),
    (dict(spatial_scale=True), "spatial_scale must be a finite number > 0.*got True"),
    (dict(aligned="no"), "aligned must be True or False, got 'no'"),
    (dict(aligned=0), "aligned must be True or False, got 0"),
])
def test_spatial_scale_and_aligned_types(kwargs, match):
    x = torch.randn(2, 3, 8, 8)
    rois = random_rois(4, 2, 8, 8, dtype=torch.float32)
    with pytest.raises(TypeError, match=match):
        roi_warp(x, rois, 7, **kwargs)
    with pytest.raises(TypeError, match=match):
        RoIWarp(7, **{"spatial_scale": 1.0, **kwargs})


def test_direct_backward_call_checks_argmax_and_rois():
    """A caller's own argmax or rois must not make the backward read out of bounds (it segfaulted)."""
    x = torch.randn(2, 3, 8, 8)
    rois = random_rois(4, 2, 8, 8, dtype=torch.float32)
    out, argmax = torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 4, 4, 2, True, 0.5)
    grad = torch.ones_like(out)

    def backward(argmax=argmax, rois=rois, grad=grad):
        return torch.ops.cascades.roi_warp_backward(grad, x, rois, argmax, 1.0, 4, 4, 2, True, 0.5)

    bad = argmax.clone()
    bad[3, 1, 2, 0] = 4
    with pytest.raises(ValueError, match=r"argmax must hold positions in the 2 x 2 pooling window \(0 to 3\).*holds 4"):
        backward(bad)
    with pytest.raises(ValueError, match="holds 255"):
        backward(torch.full_like(argmax, 255))
    with pytest.raises(TypeError, match="argmax must be uint8"):
        backward(argmax.long())
    with pytest.raises(ValueError, match="argmax must have the output's shape"):
        backward(argmax[:2])
    with pytest.raises(ValueError, match="grad_output must be K x C x pooled_height x pooled_width"):
        backward(grad=grad[:, :2])
    far = rois.clone()
    far[1, 0] = 1e6
    with pytest.raises(ValueError, match=r"rois\[1, 0\] = 1e\+06 is not a batch index in \[0, 2\)"):
        backward(rois=far)
    far[1, 0], far[2, 3] = 0, float("nan")
    with pytest.raises(ValueError, match=r"rois\[2\] has a non-finite box"):
        backward(rois=far)
    # With pool_size 1 there is no argmax to check (the forward returns an empty one).
    out, empty = torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 4, 4, 1, True, 0.5)
    torch.ops.cascades.roi_warp_backward(torch.ones_like(out), x, rois, empty, 1.0, 4, 4, 1, True, 0.5)


def test_direct_op_call_checks_arguments():
    """The compiled op checks its arguments itself (see docs/DEVELOPMENT.md, "Notes", for what we saw with torch 2.11 on CUDA)."""
    x = torch.randn(2, 3, 8, 8)
    rois = random_rois(4, 2, 8, 8, dtype=torch.float32)
    with pytest.raises(ValueError, match="rois must be K x 5"):
        torch.ops.cascades.roi_warp_forward(x, rois[:, :3], 1.0, 7, 7, 1, True, 0.5)
    with pytest.raises(ValueError, match="sample_offset must be"):
        torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 7, 7, 1, True, 0.25)
    with pytest.raises(ValueError, match="pool_size must be in"):
        torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 7, 7, 17, True, 0.5)
    rois[2, 0] = 3
    with pytest.raises(ValueError, match=r"rois\[2, 0\] = 3 is not a batch index in \[0, 2\)"):
        torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 7, 7, 1, True, 0.5)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kwargs", [dict(output_size=7), dict(output_size=28, pool_size=2),
                                    dict(output_size=(5, 9), aligned=False, sample_at="start")])
def test_cpu_cuda_parity(dtype, kwargs):
    x = torch.randn(2, 16, 25, 34, dtype=dtype)
    rois = random_rois(96, 2, 25, 34, 0.125, dtype=dtype, margin=0.4)
    cpu, cuda = run_both(
        lambda f, r: roi_warp(f, r, spatial_scale=0.125, **kwargs),
        lambda f, r: roi_warp(f.cuda(), r.cuda(), spatial_scale=0.125, **kwargs).cpu(),
        x, rois,
    )
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float64 else dict(atol=2e-3, rtol=2e-3)
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(a, b.cpu(), **tol)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_close_to_float32(dtype):
    # Both sides see the same dtype-rounded features and boxes: what is compared is the arithmetic.
    x = torch.randn(2, 16, 25, 34, device="cuda").to(dtype).float()
    rois = random_rois(64, 2, 25, 34, 0.125, dtype=torch.float32).to(dtype).float().cuda()
    full, half = run_both(
        lambda f, r: roi_warp(f, r, 7, 0.125),
        lambda f, r: roi_warp(f.to(dtype), r.to(dtype), 7, 0.125).float(),
        x, rois,
    )
    # Feature gradients are accumulated by atomics in the tensor's own dtype: bfloat16 keeps 8 bits.
    tol = 1e-2 if dtype == torch.float16 else 6e-2
    torch.testing.assert_close(half[0], full[0], atol=tol, rtol=tol)
    torch.testing.assert_close(half[1].float(), full[1], atol=tol, rtol=tol)
    # Box gradients sum thousands of products (accumulated in float32); compare relative to their scale.
    assert (half[2].float() - full[2]).abs().max() <= tol * full[2].abs().max()


@needs_cuda
def test_cuda_direct_call_with_bad_rois_writes_nan_and_no_gradient():
    x = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
    # A valid roi, one with a batch index out of range, one with a NaN coordinate.
    rois = torch.tensor([[0.0, 1.2, 0.7, 6.3, 5.1], [7.0, 1.0, 1.0, 5.0, 5.0], [1.0, 2.0, 2.0, float("nan"), 6.0]],
                        device="cuda")
    out, argmax = torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 4, 4, 2, True, 0.5)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1:]).all()
    grad_x, grad_rois = torch.ops.cascades.roi_warp_backward(torch.ones_like(out), x.detach(), rois, argmax,
                                                             1.0, 4, 4, 2, True, 0.5)
    assert grad_rois[1:].abs().sum() == 0 and grad_rois[0].abs().sum() > 0
    torch.cuda.synchronize()


@needs_cuda
def test_cuda_direct_backward_call_with_bad_argmax_gives_no_gradient():
    """The CUDA backward does not sync to check argmax: a position outside the window adds nothing."""
    x = torch.randn(2, 3, 8, 8, device="cuda")
    rois = torch.tensor([[0.0, 1.2, 0.7, 6.3, 5.1], [1.0, 2.0, 1.0, 7.0, 6.5]], device="cuda")
    out, argmax = torch.ops.cascades.roi_warp_forward(x, rois, 1.0, 4, 4, 2, True, 0.5)
    bad = argmax.clone()
    bad[1] = 255
    grad_x, grad_rois = torch.ops.cascades.roi_warp_backward(torch.ones_like(out), x, rois, bad, 1.0, 4, 4, 2, True, 0.5)
    only_first, first_rois = torch.ops.cascades.roi_warp_backward(
        torch.ones_like(out), x, rois[:1], argmax[:1], 1.0, 4, 4, 2, True, 0.5)
    torch.cuda.synchronize()
    torch.testing.assert_close(grad_x, only_first)
    assert grad_rois[1].abs().sum() == 0
    torch.testing.assert_close(grad_rois[:1], first_rois)


@needs_cuda
def test_cuda_gradcheck():
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64, device="cuda", requires_grad=True)
    rois = random_rois(6, 2, 8, 10, scale=0.5, seed=1).cuda()
    boxes = rois[:, 1:].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f, b: roi_warp(f, with_boxes(rois, b), 8, 0.5, pool_size=2), (x, boxes), eps=1e-6, atol=1e-5
    )
