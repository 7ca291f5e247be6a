#!/usr/bin/env python
"""Our SCNet, HTC and Cascade Mask R-CNN against mmdetection's own, side by side in one run: inference
latency and where it goes, training step time and peak memory, at the same weights, on the same images,
with the same number of threads.

    python tools/benchmark_mmdet.py [--models scnet_R_50_FPN_1x ...] [--images 4] [--repeats 3]
                                    [--train-steps 3] [--threads 1] [--phases infer train] [--json out.json]

Needs the reference environment (``make reference``: .venv-mmdet) and coco128-seg under
$DETECTRON2_DATASETS. For each model, mmdetection's model gets seeded random weights calibrated for
clear decisions (tests/parity/mmdet_reference.py) and ours their conversion. Images are the first
``--images`` of coco128-seg, resized once (OpenCV, bilinear) to mmdetection's test size (1333x800) and
given to both models as tensors: decoding and resizing are not timed, normalization and padding are.
Training uses the same images with their COCO instances (boxes, classes, masks) and, for the semantic
branch, a label map of the instances' classes (255 elsewhere); one image per step, SGD.

Each measurement runs in a fresh process (one per implementation and phase), so that its peak resident
memory is its own; memory is reported as that peak and as its increase over the memory held once the
model is built. Latency is the median over ``--repeats`` runs of each image after one warm-up run,
averaged over the images; the step time is the median over ``--train-steps`` steps after one warm-up;
each comes with the range (fastest-slowest) of its timed runs, as the machine may be shared.
Where the time goes (mean per image): backbone + FPN, RPN, ROI heads (box stages, semantic and
global-context branches, mask heads), post-processing (mask pasting and rescaling: detectron2's
``detector_postprocess``, mmdetection's mask head ``predict_by_feat``), and the rest (normalization,
padding). Ratios are ours / mmdetection's.
"""
import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARITY = os.path.join(ROOT, "tests", "parity")
REFERENCE_PYTHON = os.path.join(ROOT, ".venv-mmdet", "bin", "python")
# our config (configs/COCO-InstanceSegmentation/mmdet/) -> mmdetection's (as shipped in its wheel)
MODELS = {
    "scnet_R_50_FPN_1x": "scnet/scnet_r50_fpn_1x_coco.py",
    "htc_R_50_FPN_1x": "htc/htc_r50_fpn_1x_coco.py",
    "cascade_mask_rcnn_R_50_FPN_1x": "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
}
SECTIONS = ("backbone", "rpn", "heads", "post", "other")
IGNORE = 255  # semantic label of pixels outside every instance
MAX_SIZE, SHORT_SIZE = 1333, 800  # mmdetection's test scale


# ---------------------------------------------------------------- shared by both environments

class Sections:
    """Time spent in named sections, by module forwards (``wrap_module``) or by methods of an object
    or class (``wrap``). ``inside`` names the section that a timed call belongs to and is subtracted from."""

    def __init__(self):
        self.seconds = defaultdict(float)

    def _add(self, section, inside, start):
        spent = time.perf_counter() - start
        self.seconds[section] += spent
        if inside:
            self.seconds[inside] -= spent

    def wrap(self, owner, name, section, inside=None):
        original = getattr(owner, name)
        is_static = inspect.isclass(owner) and isinstance(inspect.getattr_static(owner, name), staticmethod)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(section, inside, start)

        setattr(owner, name, staticmethod(timed) if is_static else timed)

    def wrap_module(self, module, section):
        starts = []
        module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))
        module.register_forward_hook(lambda *_: self._add(section, None, starts.pop()))


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _latency(run, images, repeats, sections):
    """Median seconds per image over ``repeats`` runs after a warm-up, averaged over the images; the
    range of all timed runs; and the sections' mean seconds per image run."""
    medians, runs, timed = [], [], defaultdict(float)
    for image in images:
        run(image)  # warm-up
        sections.seconds.clear()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run(image)
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times))
        runs += times
        for section, seconds in sections.seconds.items():
            timed[section] += seconds
    total = sum(medians) / len(medians)
    per_image = {k: v / (repeats * len(images)) for k, v in timed.items()}
    per_image["other"] = total - sum(per_image.get(k, 0.0) for k in SECTIONS if k != "other")
    return total, (min(runs), max(runs)), per_image


def _step_time(step, steps):
    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), (min(times), max(times))


def _worker_result(phase, built_mb, **measured):
    return {"phase": phase, "peak_mb": _peak_mb(), "built_mb": built_mb, **measured}


def _train_result(model, batches, loss, steps, built_mb):
    """SGD steps on ``loss(batch)``, one batch after the other: their median time and range."""
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    turn = iter(range(10**9))

    def step():
        value = loss(batches[next(turn) % len(batches)])
        optimizer.zero_grad()
        value.backward()
        optimizer.step()

    step_s, step_range = _step_time(step, steps)
    return _worker_result("train", built_mb, step_s=step_s, step_range=step_range)


# ---------------------------------------------------------------- mmdetection's side (.venv-mmdet)

def _mmdet_sample(item, with_gt):
    import numpy as np
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData

    h, w = item["image_bgr"].shape[:2]
    sample = DetDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0),
                                     "pad_shape": (h, w), "batch_input_shape": (h, w)})
    if with_gt:
        sample.gt_instances = InstanceData(bboxes=item["boxes"], labels=item["labels"],
                                           masks=BitmapMasks(item["masks"].numpy().astype(np.uint8), h, w))
        sample.gt_sem_seg = PixelData(sem_seg=item["sem_seg"][None].long())
    return sample


def mmdet_worker(phase, model_name, folder, args):
    sys.path.insert(0, PARITY)
    import mmdet_reference
    from mmdet.models.roi_heads.mask_heads import FCNMaskHead

    torch.set_num_threads(args.threads)
    model, pipeline = mmdet_reference.build(MODELS[model_name])
    items = torch.load(os.path.join(folder, "inputs.pt"), weights_only=True)
    checkpoint = os.path.join(folder, "checkpoint.pth")
    if phase == "init":
        mmdet_reference.randomize(model)
        mmdet_reference.calibrate(model, pipeline, items[0]["file"])
        torch.save({"state_dict": model.state_dict(), "meta": {"config": MODELS[model_name]}}, checkpoint)
        return {"phase": phase}
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    built = _rss_mb()
    if phase == "train":
        def loss(batch):
            data = model.data_preprocessor(batch, True)
            return model.parse_losses(model.loss(data["inputs"], data["data_samples"]))[0]

        batches = [{"inputs": [item["image_bgr"].permute(2, 0, 1).contiguous()],
                    "data_samples": [_mmdet_sample(item, True)]} for item in items]
        return _train_result(model, batches, loss, args.train_steps, built)
    model.eval()
    sections = Sections()
    sections.wrap(model, "extract_feat", "backbone")
    sections.wrap(model.rpn_head, "predict", "rpn")
    sections.wrap(model.roi_head, "predict", "heads")
    sections.wrap(FCNMaskHead, "predict_by_feat", "post", inside="heads")  # SCNet's and HTC's heads too
    detections = []

    @torch.no_grad()
    def run(item):
        batch = {"inputs": [item["image_bgr"].permute(2, 0, 1).contiguous()],
                 "data_samples": [_mmdet_sample(item, False)]}
        data = model.data_preprocessor(batch, False)
        result = model.predict(data["inputs"], data["data_samples"], rescale=True)[0].pred_instances
        detections.append(len(result))

    latency, spread, per_section = _latency(run, items, args.repeats, sections)
    return _worker_result(phase, built, latency_s=latency, latency_range=spread, sections=per_section,
                          detections=statistics.mean(detections))


# ---------------------------------------------------------------- our side (.venv)

def ours_worker(phase, model_name, folder, args):
    from cascades.checkpoint import convert_mmdet_state_dict, load_mmdet_state_dict
    from cascades.model_zoo import get_config
    from detectron2.config import instantiate
    from detectron2.modeling import GeneralizedRCNN
    from detectron2.structures import BitMasks, Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.set_num_threads(args.threads)
    cfg = get_config(f"COCO-InstanceSegmentation/mmdet/{model_name}.py")
    model = instantiate(cfg.model)
    state_dict = load_mmdet_state_dict(os.path.join(folder, "checkpoint.pth"))
    model.load_state_dict(convert_mmdet_state_dict(state_dict, model.state_dict()), strict=False)
    del state_dict
    items = torch.load(os.path.join(folder, "inputs.pt"), weights_only=True)
    built = _rss_mb()

    def inputs(item, with_gt):
        h, w = item["image_bgr"].shape[:2]
        x = {"image": item["image_bgr"].flip(-1).permute(2, 0, 1).float(), "height": h, "width": w}  # RGB
        if with_gt:
            x["instances"] = Instances((h, w), gt_boxes=Boxes(item["boxes"]), gt_classes=item["labels"],
                                       gt_masks=BitMasks(item["masks"]))
            if model.roi_heads.semantic_head is not None:
                x["sem_seg"] = item["sem_seg"].long()
        return x

    if phase == "train":
        def loss(batch):
            with EventStorage():
                return sum(model(batch).values())

        return _train_result(model, [[inputs(item, True)] for item in items], loss, args.train_steps, built)
    model.eval()
    sections = Sections()
    sections.wrap_module(model.backbone, "backbone")
    sections.wrap_module(model.proposal_generator, "rpn")
    sections.wrap_module(model.roi_heads, "heads")
    sections.wrap(GeneralizedRCNN, "_postprocess", "post")
    detections = []

    @torch.no_grad()
    def run(item):
        detections.append(len(model([inputs(item, False)])[0]["instances"]))

    latency, spread, per_section = _latency(run, items, args.repeats, sections)
    return _worker_result(phase, built, latency_s=latency, latency_range=spread, sections=per_section,
                          detections=statistics.mean(detections))


# ---------------------------------------------------------------- the run

def prepare_inputs(count, out):
    """The first ``count`` coco128-seg images at mmdetection's test size with their instances."""
    import cv2
    import numpy as np
    from pycocotools import mask as mask_util

    root = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "coco128-seg")
    with open(os.path.join(root, "train.json")) as f:
        coco = json.load(f)
    contiguous = {c["id"]: i for i, c in enumerate(sorted(coco["categories"], key=lambda c: c["id"]))}
    annotations = defaultdict(list)
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            annotations[a["image_id"]].append(a)
    images = [i for i in sorted(coco["images"], key=lambda i: i["file_name"]) if annotations[i["id"]]][:count]
    items = []
    for info in images:
        path = os.path.join(root, "images", info["file_name"])
        image = cv2.imread(path)
        h, w = image.shape[:2]
        scale = min(MAX_SIZE / max(h, w), SHORT_SIZE / min(h, w))
        size = (int(w * scale + 0.5), int(h * scale + 0.5))
        resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        boxes, labels, masks = [], [], []
        for a in annotations[info["id"]]:
            x, y, bw, bh = a["bbox"]
            boxes.append([x * scale, y * scale, (x + bw) * scale, (y + bh) * scale])
            labels.append(contiguous[a["category_id"]])
            rle = mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w))
            masks.append(cv2.resize(mask_util.decode(rle), size, interpolation=cv2.INTER_NEAREST))
        masks = torch.from_numpy(np.stack(masks)).bool()
        sem_seg = torch.full(masks.shape[1:], IGNORE, dtype=torch.uint8)
        for label, mask in zip(labels, masks):
            sem_seg[mask] = label
        items.append({"file": path, "image_bgr": torch.from_numpy(resized), "boxes": torch.tensor(boxes),
                      "labels": torch.tensor(labels), "masks": masks, "sem_seg": sem_seg})
    torch.save(items, out)
    return items


def _run_worker(python, side, phase, model, folder, args):
    command = [python, os.path.abspath(__file__), "--worker", side, phase, model, folder,
               "--repeats", str(args.repeats), "--train-steps", str(args.train_steps), "--threads", str(args.threads)]
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark_mmdet.py: {side} {phase} of {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(model, args):
    with tempfile.TemporaryDirectory() as folder:
        items = prepare_inputs(args.images, os.path.join(folder, "inputs.pt"))
        _run_worker(REFERENCE_PYTHON, "mmdet", "init", model, folder, args)
        result = {"images": [os.path.basename(i["file"]) for i in items],
                  "size": [list(i["image_bgr"].shape[:2]) for i in items]}
        for side, python in (("mmdet", REFERENCE_PYTHON), ("ours", sys.executable)):
            for phase in args.phases:
                result[f"{side} {phase}"] = _run_worker(python, side, phase, model, folder, args)
        return result


def _spread(result, name):
    low, high = result[f"{name}_range"]
    return f"{result[f'{name}_s']:.2f} ({low:.2f}-{high:.2f})"


def _table(results):
    rows = ["| model | code | latency (s, range) | backbone | RPN | heads | post | other | detections | train step (s, range) "
            "| peak MB infer (+ over model) | peak MB train (+ over model) |", "|" + "---|" * 12]
    for model, r in results.items():
        for side in ("mmdet", "ours"):
            infer, train = r.get(f"{side} infer"), r.get(f"{side} train")
            s = infer["sections"] if infer else {}
            rows.append(
                f"| {model} | {'mmdetection' if side == 'mmdet' else 'ours'} | "
                + (f"{_spread(infer, 'latency')} | " + " | ".join(f"{s.get(k, 0.0):.2f}" for k in SECTIONS)
                   + f" | {infer['detections']:.0f} | " if infer else "| " * 8)
                + (f"{_spread(train, 'step')} | " if train else "| ")
                + (f"{infer['peak_mb']:.0f} (+{infer['peak_mb'] - infer['built_mb']:.0f}) | " if infer else "| ")
                + (f"{train['peak_mb']:.0f} (+{train['peak_mb'] - train['built_mb']:.0f}) |" if train else "|"))
        ours, theirs = r.get("ours infer"), r.get("mmdet infer")
        ratio = lambda key, phase: (f"{r[f'ours {phase}'][key] / r[f'mmdet {phase}'][key]:.2f}"  # noqa: E731
                                    if f"ours {phase}" in r else "")
        rows.append(f"| {model} | ours / mmdetection | {ratio('latency_s', 'infer')} | "
                    + " | ".join(f"{ours['sections'].get(k, 0.0) / max(theirs['sections'].get(k, 0.0), 1e-9):.2f}"
                                 if ours else "" for k in SECTIONS)
                    + f" | | {ratio('step_s', 'train')} | {ratio('peak_mb', 'infer')} | {ratio('peak_mb', 'train')} |")
    return "\n".join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=int, default=4, help="coco128-seg images (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each image (default 3)")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--phases", nargs="+", default=["infer", "train"], choices=["infer", "train"],
                        help="what to measure (default both)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", nargs=4, metavar=("SIDE", "PHASE", "MODEL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, phase, model, folder = args.worker
        worker = mmdet_worker if side == "mmdet" else ours_worker
        print(json.dumps(worker(phase, model, folder, args)))
        return
    for name, value in (("--images", args.images), ("--repeats", args.repeats),
                        ("--train-steps", args.train_steps), ("--threads", args.threads)):
        if value < 1:
            parser.error(f"{name} must be at least 1; got {value}")
    if not os.path.exists(REFERENCE_PYTHON):
        parser.error("no reference environment (.venv-mmdet): build it with `make reference`")
    results = {}
    for model in args.models:
        results[model] = measure(model, args)
        print(f"{model}: done", file=sys.stderr)
    steps = f"{args.train_steps} training steps, " if "train" in args.phases else ""
    print(f"{args.images} coco128-seg images at mmdetection's test size, {args.repeats} runs each, {steps}"
          f"{args.threads} thread(s); times in seconds per image, sections as means:")
    print(_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
