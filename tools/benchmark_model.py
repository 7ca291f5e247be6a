#!/usr/bin/env python
"""MNC benchmark: per-stage inference time (the paper's Table 3), and, in the same run on the same
backbone and input, MNC's 5-stage inference latency, training step time and peak memory against
detectron2's Mask R-CNN, and the time of NMS + mask voting for 600 instances.

    python tools/benchmark_model.py --config-file configs/COCO-InstanceSegmentation/mnc_R_50_FPN_1x.py \
        --device cuda --size 800 1216

Random weights and random images: timing does not depend on the values, except through the
number of detections, which the score threshold of random weights leaves near the cap (stated in
the output). Mask R-CNN keeps its own settings (1000 test proposals, ROIAlign 7/14, 4-conv mask
head); both use the config's backbone. Peak memory is measured on CUDA only.
"""
import argparse
import json
import time
from collections import defaultdict

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.model_zoo import get_config
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from benchmark_timing import median_seconds, synchronize


def _batch(size, num_images, num_gt, num_classes, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = size
    batch = []
    for _ in range(num_images):
        xy = torch.rand(num_gt, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 32 + torch.rand(num_gt, 2, generator=g) * torch.tensor([w * 0.35, h * 0.35])
        boxes = torch.cat([xy, xy + wh], dim=1)
        masks = torch.zeros(num_gt, h, w, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[k, y0:y1, x0:x1] = True
        inst = Instances((h, w), gt_boxes=Boxes(boxes), gt_classes=torch.randint(0, num_classes, (num_gt,), generator=g),
                         gt_masks=BitMasks(masks))
        batch.append({"image": (torch.rand(3, h, w, generator=g) * 255).to(device), "instances": inst.to(device),
                      "height": h, "width": w})
    return batch


class StageTimer:
    """Forward hooks that add each module call's time to its stage: the n-th call of the mask head
    (with the RoI warp just before it) is stage 2 + 2n, the n-th call of the box head and
    predictor stage 3 + 2n. The whole forward minus the stages is "others" (NMS, voting, pasting)."""

    def __init__(self, model, device):
        self.device = device
        self.times = defaultdict(float)
        self.calls = defaultdict(int)
        model.register_forward_pre_hook(lambda module, inputs: self.calls.clear())  # stages count per forward
        heads = model.roi_heads
        groups = {"conv": [model.backbone], "stage 1 (RPN)": [model.proposal_generator],
                  "mask": [heads.pooler, heads.mask_head], "category": [heads.box_head, heads.box_predictor]}
        for group, modules in groups.items():
            for m in modules:
                m.register_forward_pre_hook(self._start)
                m.register_forward_hook(lambda mod, inp, out, group=group: self._stop(mod, group))

    def _start(self, module, inputs):
        synchronize(self.device)
        module._bench_t0 = time.perf_counter()

    def _stop(self, module, group):
        synchronize(self.device)
        dt = time.perf_counter() - module._bench_t0
        if group in ("mask", "category"):
            base = 2 if group == "mask" else 3
            # pooler and mask head are called once each per pair; so are box head and predictor.
            key = (group, type(module).__name__)
            stage = base + 2 * self.calls[key]
            self.calls[key] += 1
            self.times[f"stage {stage}"] += dt
        else:
            self.times[group] += dt

    def reset(self):
        self.times.clear()
        self.calls.clear()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="configs/COCO-InstanceSegmentation/mnc_R_50_FPN_1x.py")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=2, default=[800, 1216], metavar=("H", "W"))
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=2, help="images per training step")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    device = torch.device(args.device)

    cfg = LazyConfig.load(args.config_file)
    if "out_channels" not in cfg.model.backbone:
        parser.error("--config-file: the comparison with Mask R-CNN needs an FPN backbone (model.backbone.out_channels)")
    width = cfg.model.backbone.out_channels
    mrcnn_cfg = get_config("common/models/mask_rcnn_fpn.py").model
    mrcnn_cfg.backbone = cfg.model.backbone
    mrcnn_cfg.proposal_generator.head.in_channels = width
    mrcnn_cfg.roi_heads.box_head.input_shape.channels = width
    mrcnn_cfg.roi_heads.mask_head.input_shape.channels = width
    mrcnn_cfg.roi_heads.num_classes = cfg.model.roi_heads.num_classes
    torch.manual_seed(0)
    models = {"MNC": instantiate(cfg.model).to(device), "Mask R-CNN": instantiate(mrcnn_cfg).to(device)}
    num_classes = cfg.model.roi_heads.num_classes
    test_batch = _batch(args.size, 1, 5, num_classes, device)
    out = {"device": str(torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
           "input": args.size, "config": args.config_file}

    # Inference latency (1 image) and MNC's per-stage breakdown.
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            out[f"{name} inference s"] = median_seconds(lambda: model(test_batch), device, args.iters, args.warmup)
    mnc = models["MNC"]
    timer = StageTimer(mnc, device)
    with torch.no_grad():
        mnc(test_batch)
        timer.reset()
        t0 = time.perf_counter()
        result = None
        for _ in range(args.iters):
            synchronize(device)
            result = mnc(test_batch)
        synchronize(device)
        total = (time.perf_counter() - t0) / args.iters
    stages = {k: v / args.iters for k, v in sorted(timer.times.items())}
    stages["others (NMS, voting, paste)"] = total - sum(stages.values())
    out["MNC stages s (hooks synchronize: slightly slower than unhooked)"] = stages
    out["MNC detections per image"] = len(result[0]["instances"])

    # NMS + mask voting of 600 instances (300 + 300), as the heads run it.
    heads = mnc.roi_heads
    k, m = heads.num_classes, heads.mask_head.mask_size
    g = torch.Generator().manual_seed(1)
    h, w = args.size
    xy = torch.rand(600, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    boxes = torch.cat([xy, xy + 40 + torch.rand(600, 2, generator=g) * 200], dim=1).to(device)
    probs = torch.softmax(torch.randn(600, k + 1, generator=g) * 3, dim=1)[:, :k].to(device)
    masks = torch.rand(600, m, m, generator=g).to(device)
    class_boxes = boxes[:, None].expand(-1, k, -1).contiguous()
    with torch.no_grad():
        out["NMS + voting of 600 instances s"] = median_seconds(
            lambda: heads._instances((h, w), class_boxes, probs, masks, boxes), device, args.iters, args.warmup)
    out["voting / MNC inference"] = out["NMS + voting of 600 instances s"] / out["MNC inference s"]

    # Training step time and peak memory.
    train_batch = _batch(args.size, args.train_images, 5, num_classes, device, seed=2)
    for name, model in models.items():
        model.train()
        # lr 0: the step costs the same, and random weights cannot drift into NaN over the timed steps.
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)

        def step():
            with EventStorage():
                loss = sum(model(train_batch).values())
            opt.zero_grad()
            loss.backward()
            opt.step()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        out[f"{name} train step s"] = median_seconds(step, device, args.iters, args.warmup)
        if device.type == "cuda":
            out[f"{name} train peak memory GiB"] = torch.cuda.max_memory_allocated(device) / 2**30
    out["inference ratio MNC / Mask R-CNN"] = out["MNC inference s"] / out["Mask R-CNN inference s"]
    out["train step ratio MNC / Mask R-CNN"] = out["MNC train step s"] / out["Mask R-CNN train step s"]
    if device.type == "cuda":
        out["train memory ratio MNC / Mask R-CNN"] = (
            out["MNC train peak memory GiB"] / out["Mask R-CNN train peak memory GiB"])
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
