#!/usr/bin/env python
"""Times cascades' roi_warp against torchvision's roi_align and the pure-PyTorch reference, in one run.

  python tools/benchmark_ops.py [--device cpu|cuda] [--repeats N] [--no-memory]

Baselines, each with the same number of samples (one bilinear sample per output cell):
- torchvision: ``roi_align(sampling_ratio=1, aligned=True)`` (+ ``max_pool2d`` for the pooled shape);
  its backward gives NO box gradient, ours does.
- reference: ``cascades.layers.roi_warp_reference`` (autograd through gathered neighbours), which does.
Peak memory: on CUDA ``max_memory_allocated`` above what the inputs hold; on the CPU each measurement
runs in a fresh process and reports its peak resident memory above the level before the call.
On CUDA the forward's bandwidth is compared with a device-to-device copy measured in the same run.
"""

import argparse
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F
import torchvision

from benchmark_timing import median_seconds
from cascades.layers import roi_warp
from cascades.engine.progress import Progress
from cascades.layers.roi_warp_reference import roi_warp_reference

# (name, number of RoIs, warp size, max-pool size); features 2 x 256 x 200 x 272 at stride 4.
SHAPES = [("512 RoIs 7x7", 512, 7, 1), ("256 RoIs 28x28 + 2x2 max", 256, 28, 2), ("100 RoIs 14x14", 100, 14, 1)]
FEATURES = (2, 256, 200, 272)
SCALE = 0.25


def make_inputs(num_rois, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(FEATURES, generator=g)
    img_h, img_w = FEATURES[2] / SCALE, FEATURES[3] / SCALE
    wh = torch.rand(num_rois, 2, generator=g) * 384 + 16
    xy = torch.rand(num_rois, 2, generator=g) * (torch.tensor([img_w, img_h]) - wh)
    index = torch.randint(FEATURES[0], (num_rois, 1), generator=g).float()
    rois = torch.cat([index, xy, xy + wh], dim=1)
    return x.to(device), rois.to(device)


def run_impl(impl, x, rois, size, pool, backward):
    """One forward (and backward) of an implementation."""
    xi = x.requires_grad_(backward)
    r = rois.requires_grad_(backward and impl != "torchvision")
    if impl == "ours":
        out = roi_warp(xi, r, size, SCALE, aligned=True, pool_size=pool)
    elif impl == "torchvision":
        out = torchvision.ops.roi_align(xi, r, size, SCALE, sampling_ratio=1, aligned=True)
        if pool > 1:
            out = F.max_pool2d(out, pool)
    else:
        out = roi_warp_reference(xi, r, size, SCALE, aligned=True, pool_size=pool)
    if backward:
        out.backward(torch.ones_like(out))
        xi.grad = None
        r.grad = None
    return out


def rss_bytes(field):
    """VmRSS (resident now) or VmHWM (peak resident) of this process, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def peak_memory(impl, shape_index, device):
    """Peak memory (bytes) of one forward+backward above what the inputs already hold."""
    _, num_rois, size, pool = SHAPES[shape_index]
    if device == "cuda":
        x, rois = make_inputs(num_rois, device)
        run_impl(impl, x, rois, size, pool, True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_impl(impl, x, rois, size, pool, True)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # CPU: a fresh process, so that the high-water mark belongs to this one call.
    out = subprocess.run(
        [sys.executable, __file__, "--peak-child", impl, str(shape_index)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def peak_child(impl, shape_index):
    _, num_rois, size, pool = SHAPES[shape_index]
    x, rois = make_inputs(num_rois, "cpu")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size (Linux >= 4.0)
    base = rss_bytes("VmRSS")
    run_impl(impl, x, rois, size, pool, True)
    print(rss_bytes("VmHWM") - base)


def copy_bandwidth(device, repeats):
    """Device-to-device copy bandwidth in bytes/s, counting bytes read and written."""
    src = torch.empty(256 * 2**20, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    seconds = median_seconds(lambda: dst.copy_(src), device, repeats, warmup=2)
    return 2 * src.numel() * src.element_size() / seconds


def cuda_kernel_ms(fn, name_part, repeats):
    """Mean device time (ms) per call of the CUDA kernels whose name contains `name_part` (all of them,
    memsets and copies included, when it is ""), from the profiler: GPU time alone, without the Python,
    dispatch and argument-check overhead of a call."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    totals = [e.self_device_time_total for e in prof.key_averages() if name_part in e.key]
    if not totals:
        raise RuntimeError(f"no CUDA kernel named like {name_part!r} ran")
    return sum(totals) / repeats / 1e3


def device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {torch.get_num_threads()} threads"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (median reported)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--peak-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_child:
        return peak_child(args.peak_child[0], int(args.peak_child[1]))
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    repeats = args.repeats or (50 if args.device == "cuda" else 5)
    print(f"device: {device_name(args.device)}; torch {torch.__version__}, torchvision {torchvision.__version__}; "
          f"features {FEATURES}, spatial_scale {SCALE}; median of {repeats}")
    results = []
    # Per shape: 3 implementations x (forward, forward + backward), and the peak memory of 2 of them.
    progress = Progress("measuring", total=len(SHAPES) * (6 if args.no_memory else 8), unit="measurements")
    for index, (name, num_rois, size, pool) in enumerate(SHAPES):
        x, rois = make_inputs(num_rois, args.device)
        row = {"shape": name}
        for impl in ("ours", "torchvision", "reference"):
            for backward, key in ((False, "fwd"), (True, "fwdbwd")):
                call = lambda: run_impl(impl, x, rois, size, pool, backward)  # noqa: E731
                row[f"{impl}_{key}_ms"] = 1e3 * median_seconds(call, args.device, repeats, warmup=2)
                if args.device == "cuda" and impl != "reference":
                    row[f"{impl}_{key}_gpu_ms"] = cuda_kernel_ms(call, "", repeats)
                progress.update()
            if not args.no_memory and impl != "torchvision":
                row[f"{impl}_peak_mb"] = peak_memory(impl, index, args.device) / 2**20
                progress.update()
        out_elems = num_rois * FEATURES[1] * (size // pool) ** 2 * pool * pool
        # Bytes the forward requests: four neighbours read and one value written per warp sample.
        row["fwd_bytes"] = 5 * out_elems * x.element_size()
        results.append(row)
    progress.close()
    bandwidth = copy_bandwidth(args.device, repeats) if args.device == "cuda" else None

    print("\n| shape | fwd ours / tv | fwd+bwd ours (box grads) / tv (none) | fwd+bwd ref / ours | peak mem ref / ours |"
          " ours fwd, fwd+bwd (ms) |")
    print("|---|---|---|---|---|---|")
    for row in results:
        memory = (f"{row['reference_peak_mb'] / row['ours_peak_mb']:.1f}x "
                  f"({row['reference_peak_mb']:.0f} / {row['ours_peak_mb']:.0f} MB)") if "ours_peak_mb" in row else "-"
        print(f"| {row['shape']} | {row['ours_fwd_ms'] / row['torchvision_fwd_ms']:.2f} "
              f"| {row['ours_fwdbwd_ms'] / row['torchvision_fwdbwd_ms']:.2f} "
              f"| {row['reference_fwdbwd_ms'] / row['ours_fwdbwd_ms']:.1f}x | {memory} "
              f"| {row['ours_fwd_ms']:.3f}, {row['ours_fwdbwd_ms']:.3f} |")
    if args.device == "cuda":
        print("\nGPU time alone (profiler: all kernels, memsets and copies of one call), ours / torchvision:")
        print("| shape | fwd | fwd+bwd | ours fwd, fwd+bwd (ms) |\n|---|---|---|---|")
        for row in results:
            print(f"| {row['shape']} | {row['ours_fwd_gpu_ms'] / row['torchvision_fwd_gpu_ms']:.2f} "
                  f"| {row['ours_fwdbwd_gpu_ms'] / row['torchvision_fwdbwd_gpu_ms']:.2f} "
                  f"| {row['ours_fwd_gpu_ms']:.3f}, {row['ours_fwdbwd_gpu_ms']:.3f} |")
    if bandwidth:
        large = results[0]
        _, num_rois, size, pool = SHAPES[0]
        x, rois = make_inputs(num_rois, args.device)
        kernels = {
            "ours": cuda_kernel_ms(lambda: run_impl("ours", x, rois, size, pool, False), "forward_kernel", repeats),
            "torchvision": cuda_kernel_ms(lambda: run_impl("torchvision", x, rois, size, pool, False),
                                          "roi_align_forward_kernel", repeats),
        }
        print(f"\ndevice copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write). Forward kernel alone on "
              f"'{large['shape']}' (profiler), bytes requested = 4 reads + 1 write per sample:")
        for impl, ms in kernels.items():
            achieved = large["fwd_bytes"] / (ms / 1e3)
            large[f"{impl}_fwd_kernel_ms"] = ms
            print(f"  {impl}: {ms * 1e3:.1f} us, {achieved / 1e12:.2f} TB/s = {100 * achieved / bandwidth:.0f}% of copy")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name(args.device), "copy_bandwidth": bandwidth, "rows": results}, f, indent=1)


if __name__ == "__main__":
    main()
