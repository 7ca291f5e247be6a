#!/usr/bin/env python
"""Inference latency, training step time and peak training memory of SCNet, HTC, our Cascade Mask
R-CNN with the semantic branch and detectron2's own Cascade Mask R-CNN, measured in one run.

  python tools/benchmark_cascades.py [--device cpu|cuda] [--size 512] [--repeats 5] [--threads N]
                                    [--no-train] [--flops]

All four models use the same R-50-FPN backbone (random init, 80 classes) and the same input: a
``--size`` x ``--size`` image for inference, a batch of two with 6 objects each for training.
Random weights (each residual block starting as the identity, see ``build_model``) give arbitrary
scores, so every model's score threshold is set to 0 and each segments
exactly ``test_topk_per_image`` = 100 detections: the mask work is the same as on a trained model.
Times are medians over ``--repeats`` runs after one warm-up. Peak memory: on CUDA
``max_memory_allocated`` during training steps; on the CPU each model trains in a fresh process that
reports its peak resident memory above the level after building the model.
Ratios are against HTC (throughput, memory) and detectron2's Cascade Mask R-CNN (latency).
``--flops`` adds each model's inference GFLOPs (fvcore's count through detectron2's
FlopCountAnalysis: convolutions, matmuls, RoIAlign and the like; one multiply-add = one flop, as
fvcore counts), the compute that the latency ratios are compared with.
"""
import argparse
import json
import os
import resource
import sys

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.model_zoo import get_config
from detectron2.modeling.backbone import BottleneckBlock
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from benchmark_child import measure_in_child
from benchmark_timing import median_seconds

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "SCNet": "configs/common/models/scnet_fpn.py",
    "HTC": "configs/common/models/htc_fpn.py",
    "Cascade Mask R-CNN + semantic (ours)": "configs/common/models/cascade_mask_rcnn_semantic_fpn.py",
    "Cascade Mask R-CNN (detectron2)": None,
}


def build_model(name, device):
    path = MODELS[name]
    if path is None:
        model_cfg = get_config("common/models/cascade_rcnn.py").model
    else:
        model_cfg = LazyConfig.load(os.path.join(REPO, path)).model
    for predictor in model_cfg.roi_heads.box_predictors:
        predictor.test_score_thresh = 0.0
    torch.manual_seed(0)
    model = instantiate(model_cfg)
    # Random R-50 weights with identity FrozenBN overflow to Inf/NaN (then nothing is detected and
    # training diverges). Zeroing each block's last norm scale makes every residual block start as
    # the identity, so activations stay finite; the amount of computation is unchanged.
    for block in model.backbone.bottom_up.modules():
        if isinstance(block, BottleneckBlock):
            block.conv3.norm.weight.zero_()
    return model.to(device)


def make_inputs(size, num_images, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(num_images):
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        xy = torch.rand(6, 2, generator=g) * size * 0.6
        boxes = torch.cat([xy, xy + 32 + torch.rand(6, 2, generator=g) * size * 0.35], 1)
        boxes = boxes.clamp(max=size - 1)
        masks = torch.zeros(6, size, size, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[k, y0:y1, x0:x1] = True
        gt = Instances((size, size))
        gt.gt_boxes = Boxes(boxes)
        gt.gt_classes = torch.randint(0, 80, (6,), generator=g)
        gt.gt_masks = BitMasks(masks)
        sem_seg = torch.zeros(size, size, dtype=torch.long)
        for k in range(6):
            sem_seg[masks[k]] = int(gt.gt_classes[k]) + 1
        inputs.append({"image": image, "height": size, "width": size, "instances": gt, "sem_seg": sem_seg})
    return inputs


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name, args):
    model = build_model(name, args.device)
    infer_input = make_inputs(args.size, 1, seed=1)
    train_inputs = make_inputs(args.size, 2)
    result = {}
    if not args.no_train:
        result = measure_training(model, train_inputs, args)
    model.eval()
    with torch.no_grad():
        result["latency_s"] = median_seconds(lambda: model(infer_input), args.device, args.repeats, warmup=1)
        result["detections"] = len(model(infer_input)[0]["instances"])
        if args.flops:
            result["gflops"] = inference_gflops(model, infer_input)
    return result


def inference_gflops(model, inputs):
    from detectron2.utils.analysis import FlopCountAnalysis

    # Inputs without annotations: the traced forward is inference only.
    inputs = [{k: v for k, v in x.items() if k in ("image", "height", "width")} for x in inputs]
    counter = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return counter.total() / 1e9


def measure_training(model, train_inputs, args):
    """Step time and peak memory; run first, so that the CPU's peak resident memory is training's."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_mb()

    def step():
        with EventStorage():
            loss = sum(model(train_inputs).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step_time = median_seconds(step, args.device, args.repeats, warmup=1)
    if args.device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"train_step_s": step_time, "train_peak_mb": peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--no-train", action="store_true", help="inference latency only")
    parser.add_argument("--flops", action="store_true", help="also count inference GFLOPs (fvcore)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # one model, in a child process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args.only, args)))
        return

    results = {}
    for name in MODELS:
        argv = ["--device", args.device, "--size", str(args.size), "--repeats", str(args.repeats),
                "--threads", str(args.threads)]
        argv += ["--no-train"] if args.no_train else []
        argv += ["--flops"] if args.flops else []
        results[name] = measure_in_child(__file__, name, argv)
        print(f"measured {name}: {results[name]}", file=sys.stderr)

    htc, d2 = results["HTC"], results["Cascade Mask R-CNN (detectron2)"]
    print(f"device: {args.device}, input {args.size}x{args.size}, R-50-FPN random init, "
          f"median of {args.repeats}, torch threads {torch.get_num_threads() if not args.threads else args.threads}")
    print("| model | latency (s) | throughput vs HTC | latency vs d2 Cascade | train step (s) | "
          "train peak mem (MB) | mem vs HTC |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        train = "| - | - | - |"
        if not args.no_train:
            train = (f"| {r['train_step_s']:.2f} | {r['train_peak_mb']:.0f} | "
                     f"{r['train_peak_mb'] / htc['train_peak_mb']:.2f}x |")
        print(f"| {name} | {r['latency_s']:.3f} | {htc['latency_s'] / r['latency_s']:.2f}x | "
              f"{r['latency_s'] / d2['latency_s']:.2f}x {train}")
    if args.flops:
        print("| model | inference GFLOPs | vs HTC | vs d2 Cascade |")
        print("|---|---|---|---|")
        for name, r in results.items():
            print(f"| {name} | {r['gflops']:.1f} | {r['gflops'] / htc['gflops']:.2f}x | {r['gflops'] / d2['gflops']:.2f}x |")
    scnet = results["SCNet"]
    print(f"targets: SCNet throughput >= 1.3x HTC: {htc['latency_s'] / scnet['latency_s']:.2f}x; "
          f"SCNet latency <= 1.25x detectron2 Cascade: {scnet['latency_s'] / d2['latency_s']:.2f}x")
    if not args.no_train:
        print(f"SCNet training memory <= 1.2x HTC: {scnet['train_peak_mb'] / htc['train_peak_mb']:.2f}x")

if __name__ == "__main__":
    main()
