"""Wall-clock timing shared by the benchmark scripts in tools/ (imported from beside them)."""
import statistics
import time

import torch


def synchronize(device):
    """Waits for the GPU when ``device`` (a str or torch.device) is a CUDA device: timings must not
    stop before the kernels they launched have run."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, device, repeats, warmup):
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones, each call
    bracketed by :func:`synchronize`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
