"""Stage-by-stage comparison of our converted models with mmdetection's own code.

``reference(...)`` runs tests/parity/mmdet_reference.py in the reference environment (.venv-mmdet): it
builds mmdetection's model with seeded random weights, saves them and what each stage computes on
real photos. ``compare(...)`` converts those weights into our model built from our config, runs each
of our stages on the same inputs (the same resized image; each box stage on mmdetection's input boxes;
the mask heads on mmdetection's detections) and returns the worst differences.

    .venv/bin/python tests/parity/parity.py [model ...]   # prints the table of docs/MMDET.md
"""
import os
import subprocess
import sys
import tempfile

import torch

from cascades.checkpoint import convert_mmdet_state_dict, load_mmdet_state_dict
from detectron2.config import LazyConfig, instantiate
from detectron2.layers import paste_masks_in_image
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes, Instances, pairwise_iou

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REFERENCE_PYTHON = os.path.join(ROOT, ".venv-mmdet", "bin", "python")
REFERENCE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmdet_reference.py")
# our config -> mmdetection's config (as shipped in the mmdet wheel under mmdet/.mim/configs)
MODELS = {
    "scnet_R_50_FPN_1x": "scnet/scnet_r50_fpn_1x_coco.py",
    "htc_R_50_FPN_1x": "htc/htc_r50_fpn_1x_coco.py",
    "cascade_mask_rcnn_R_50_FPN_1x": "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "scnet_X_101_64x4d_FPN_20e": "scnet/scnet_x101-64x4d_fpn_20e_coco.py",
    "htc_X_101_32x4d_FPN_20e": "htc/htc_x101-32x4d_fpn_16xb1-20e_coco.py",
    "cascade_mask_rcnn_X_101_32x4d_FPN_1x": "cascade_rcnn/cascade-mask-rcnn_x101-32x4d_fpn_1x_coco.py",
}
# Float noise between the two implementations: a detection whose score lies this close to a
# threshold (score threshold, the 100th score) may be kept by one and not the other.
SCORE_NOISE = 1e-4
MASK_IOU = 0.99
# Tolerances of the stages: relative to the reference's largest magnitude (float32 rounding through
# 50-101 layers); boxes in pixels.
FEATURES, LOGITS, BOXES_PX = 1e-4, 1e-3, 1e-2


def coco128_images(count):
    folder = os.path.join(os.environ.get("DETECTRON2_DATASETS", "datasets"), "coco128-seg", "images")
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))[:count]]


def reference(model, images, out_dir):
    """Runs mmdetection on ``images``; returns the folder with its checkpoint and outputs."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run([REFERENCE_PYTHON, REFERENCE_SCRIPT, MODELS[model], out_dir, *images], check=True, env=env,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return out_dir


def our_model(model, checkpoint):
    cfg = LazyConfig.load(os.path.join(ROOT, "configs", "COCO-InstanceSegmentation", "mmdet", f"{model}.py"))
    ours = instantiate(cfg.model).eval()
    ours.load_state_dict(convert_mmdet_state_dict(load_mmdet_state_dict(checkpoint), ours.state_dict()),
                         strict=False)  # only BatchNorm step counters (FrozenBN has none) are left out
    return ours


def _rel(a, b):
    """Largest difference relative to the reference's largest magnitude. A reference cut to its first
    channels, RoIs or detections (the golden files) is compared with the same part of ``a``."""
    a = a[tuple(slice(0, n) for n in b.shape)]
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12)) if b.numel() else 0.0


def _abs(a, b):
    return float((a - b).abs().max()) if b.numel() else 0.0


def _match_boxes(ours, theirs, tol):
    """How many of ``theirs`` have a box in ``ours`` within ``tol`` pixels (all coordinates)."""
    if len(theirs) == 0 or len(ours) == 0:
        return 0
    return int(((ours[None] - theirs[:, None]).abs().amax(-1) < tol).any(1).sum())


@torch.no_grad()
def compare_stages(ours, ref):
    """Worst differences of every stage, each on mmdetection's inputs."""
    image = ref["image_bgr"].flip(0).float()  # BGR -> RGB, as our config's input_format
    images = ours.preprocess_image([{"image": image}])
    features = ours.backbone(images.tensor)
    rh = ours.roi_heads
    out = {f"features {k}": _rel(features[k], ref["features"][i])
           for i, k in enumerate(["p2", "p3", "p4", "p5", "p6"])}
    proposals, _ = ours.proposal_generator(images, features)
    ref_props = ref["proposals"]
    out["proposals matched"] = _match_boxes(proposals[0].proposal_boxes.tensor, ref_props, 1e-2) / len(ref_props)
    context, _ = rh._image_context(features)
    if rh.semantic_head is not None:
        out["semantic logits"] = _rel(rh.semantic_head(features)[0], ref["semantic_logits"])
    if rh.global_context_head is not None:
        out["global-context logits"] = _rel(rh.global_context_head(features)[0], ref["glbctx_logits"])
    box_in = [features[f] for f in rh.box_in_features]
    for t, stage in enumerate(ref["stages"]):
        boxes = [Boxes(stage["rois"])]
        logits, deltas = rh.box_predictor[t](rh._box_head_features(box_in, boxes, t, context))
        out[f"stage {t} logits"] = _rel(logits, stage["cls_logits"])
        decoded = rh.box_predictor[t].box2box_transform.apply_deltas(deltas, boxes[0].tensor)
        decoded = Boxes(decoded)
        decoded.clip(images.image_sizes[0])
        out[f"stage {t} boxes (px)"] = _abs(decoded.tensor, stage["boxes"])
    dets = [Boxes(ref["dets_boxes"])]
    for h, logits in enumerate(_mask_logits(ours, features, dets, context)):
        out[f"mask head {h} logits"] = _rel(logits, ref["mask_logits"][h])
    return out


def assert_stages_agree(result):
    """Every stage of ``result`` (``compare_stages``' or ``compare``'s) within the tolerances."""
    for key, value in result.items():
        if key.startswith("features"):
            assert value < FEATURES, (key, value)
        elif "logits" in key:
            assert value < LOGITS, (key, value)
        elif "(px)" in key:
            assert value < BOXES_PX, (key, value)


def _mask_logits(ours, features, boxes, context):
    """Each mask head's logits on ``boxes``, as our ROI heads compute them at test time."""
    rh = ours.roi_heads
    x = rh._mask_roi_features(features, boxes, context)
    if hasattr(rh, "_chain"):  # HTC: heads in chain
        return [head.predict(f) for head, f in zip(rh.mask_head, rh._chain(x, len(rh.mask_head) - 1))]
    if rh.feature_relays is not None:  # SCNet: the last stage's box features relayed
        box_in = [features[f] for f in rh.box_in_features]
        relayed = rh.feature_relays[0](rh._box_head_features(box_in, boxes, rh.num_cascade_stages - 1, context))
        return [rh.mask_head[0].layers(x + relayed)]
    return [head.layers(x) for head in rh.mask_head]


def _reference_masks(ref, ensemble):
    """mmdetection's full-size masks (None when the reference has none); for HTC, the average of its
    three heads as mmdetection 2 computed it for the published AP (mmdetection 3.3.0's test path keeps
    only the last head, docs/MMDET.md)."""
    if "final_masks" not in ref:
        return None
    if not ensemble:
        return ref["final_masks"]
    labels = ref["final_labels"]
    probs = torch.sigmoid(ref["mask_logits"]).mean(0)[torch.arange(len(labels)), labels]
    return paste_masks_in_image(probs, Boxes(ref["final_boxes"]), ref["ori_shape"], threshold=0.5)


@torch.no_grad()
def detect(ours, ref, own_proposals=True):
    """Our detections on the original image, from our RPN's proposals or from mmdetection's."""
    h, w = ref["ori_shape"]
    inputs = [{"image": ref["image_bgr"].flip(0).float(), "height": h, "width": w}]
    if own_proposals:
        return ours(inputs)[0]["instances"]
    images = ours.preprocess_image(inputs)
    proposals = Instances(images.image_sizes[0], proposal_boxes=Boxes(ref["proposals"]),
                          objectness_logits=ref["proposal_scores"])
    results, _ = ours.roi_heads(images, ours.backbone(images.tensor), [proposals])
    return GeneralizedRCNN._postprocess(results, inputs, images.image_sizes)[0]["instances"]


def compare_final(instances, ref, score_thresh, ensemble):
    """Our final detections ``instances`` against mmdetection's: matched by class and box, scores and
    mask IoU (when the reference has masks)."""
    theirs_masks = _reference_masks(ref, ensemble)
    t_boxes, t_scores, t_labels = ref["final_boxes"], ref["final_scores"], ref["final_labels"]
    o_boxes, o_scores, o_labels = instances.pred_boxes.tensor, instances.scores, instances.pred_classes
    # A detection is decided by float noise when its score is that close to the score threshold or to
    # the last kept score (the 100-per-image cut).
    cut = float(t_scores.min()) if len(t_scores) == 100 else score_thresh
    noisy = lambda s: (s - score_thresh).abs() < SCORE_NOISE or (s - cut).abs() < SCORE_NOISE  # noqa: E731
    # mmdetection keeps boxes that clipping left empty; detectron2's detector_postprocess drops them.
    empty = ((t_boxes[:, 2] <= t_boxes[:, 0]) | (t_boxes[:, 3] <= t_boxes[:, 1])).tolist()
    iou = pairwise_iou(Boxes(t_boxes), Boxes(o_boxes)) if len(o_boxes) else torch.zeros(len(t_boxes), 0)
    matched, unmatched, left_out, score_diff, box_diff, mask_ious = 0, 0, 0, 0.0, 0.0, []
    used = set()
    for i in range(len(t_boxes)):
        if empty[i]:
            continue
        candidates = [j for j in (iou[i] > 0.99).nonzero()[:, 0].tolist()
                      if o_labels[j] == t_labels[i] and j not in used]
        if not candidates:
            if noisy(t_scores[i]):
                left_out += 1
            else:
                unmatched += 1
            continue
        j = min(candidates, key=lambda j: float((o_scores[j] - t_scores[i]).abs()))
        used.add(j)
        matched += 1
        score_diff = max(score_diff, float((o_scores[j] - t_scores[i]).abs()))
        box_diff = max(box_diff, float((o_boxes[j] - t_boxes[i]).abs().max()))
        if theirs_masks is not None:
            a, b = instances.pred_masks[j].bool(), theirs_masks[i].bool()
            union = (a | b).sum()
            mask_ious.append(float((a & b).sum() / union) if union else 1.0)
    extra = sum(1 for j in range(len(o_boxes)) if j not in used and not noisy(o_scores[j]))
    return {
        "detections (mmdet)": len(t_boxes), "matched": matched, "unmatched": unmatched + extra,
        "empty boxes (mmdet keeps them; detectron2 drops them)": sum(empty),
        "left out (score within noise of a threshold)": left_out + sum(
            1 for j in range(len(o_boxes)) if j not in used and noisy(o_scores[j])),
        "score": score_diff, "box (px)": box_diff,
        "min mask IoU": min(mask_ious, default=1.0),
        "masks IoU < 0.99": sum(1 for v in mask_ious if v < MASK_IOU),
    }


def compare(model, ref, checkpoint):
    ours = our_model(model, checkpoint)
    score_thresh = ours.roi_heads.box_predictor[-1].test_score_thresh
    ensemble = model.startswith("htc")
    given = compare_final(detect(ours, ref, own_proposals=False), ref, score_thresh, ensemble)
    return {**compare_stages(ours, ref), **compare_final(detect(ours, ref), ref, score_thresh, ensemble),
            **{f"{k}, on mmdet's proposals": v for k, v in given.items()}}


def report(model, rows):
    """``compare``'s results for the images of one model, one line per figure, a column per image."""
    return f"\n{model}:\n" + "\n".join(f"  {key}: " + ", ".join(f"{r[key]:.3g}" for r in rows) for key in rows[0])


def main(models, images=2):
    torch.set_num_threads(1)
    for model in models:
        with tempfile.TemporaryDirectory() as out:
            reference(model, coco128_images(images), out)
            refs = [torch.load(os.path.join(out, f), weights_only=False)
                    for f in sorted(os.listdir(out)) if f != "checkpoint.pth"]
            print(report(model, [compare(model, ref, os.path.join(out, "checkpoint.pth")) for ref in refs]))


if __name__ == "__main__":
    main(sys.argv[1:] or list(MODELS))
