"""Writes tests/checkpoint/mmdet_golden/<our config>.pt: what mmdetection's own SCNet, HTC and Cascade Mask R-CNN (R-50)
compute, stage by stage, on one small synthetic image at the seeded random weights of mmdet_seeded.py,
cut to the first few channels, RoIs and detections. test_mmdet_golden.py checks our converted models
against them without mmdetection. Run in the reference environment:

    .venv-mmdet/bin/python tests/parity/write_mmdet_golden.py
"""
import os
import sys
import tempfile

import cv2
import torch

from mmdet_reference import build, run
from mmdet_seeded import GOLDEN_CLASS_LOGIT_STD, SEED, random_weights

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoint", "mmdet_golden")
# our config -> mmdetection's
MODELS = {
    "scnet_R_50_FPN_1x": "scnet/scnet_r50_fpn_1x_coco.py",
    "htc_R_50_FPN_1x": "htc/htc_r50_fpn_1x_coco.py",
    "cascade_mask_rcnn_R_50_FPN_1x": "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
}
HEIGHT, WIDTH = 120, 160
# Kept of each output: channels of features and semantic logits, proposals, RoIs per box stage, and
# (detections, classes) of the mask logits. Final detections are kept whole.
CHANNELS, PROPOSALS, ROIS, MASKS = 4, 64, 32, (4, 2)


def synthetic_image(seed=SEED):
    """(H, W, 3) uint8 BGR: smooth colour blobs that differ per channel, and pixel noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 6, 8, generator=gen) * 255
    image = torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bicubic", align_corners=False)
    image = image[0] + torch.randn(3, HEIGHT, WIDTH, generator=gen) * 12
    return image.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()


def cut(ref):
    """The parts of a reference run (mmdet_reference.run) that the golden file keeps."""
    out = {k: ref[k] for k in ("image_bgr", "ori_shape", "img_shape", "scale_factor", "dets_boxes", "dets_scores",
                               "dets_labels", "final_boxes", "final_scores", "final_labels")}
    out["features"] = [f[:, :CHANNELS].clone() for f in ref["features"]]
    out["proposals"] = ref["proposals"][:PROPOSALS].clone()
    out["proposal_scores"] = ref["proposal_scores"][:PROPOSALS].clone()
    out["stages"] = [{k: v[:ROIS].clone() for k, v in stage.items()} for stage in ref["stages"]]
    if "semantic_logits" in ref:
        out["semantic_logits"] = ref["semantic_logits"][:, :CHANNELS].clone()
    if "glbctx_logits" in ref:
        out["glbctx_logits"] = ref["glbctx_logits"]
    out["mask_logits"] = ref["mask_logits"][:, : MASKS[0], : MASKS[1]].clone()
    return out


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "synthetic.png")  # lossless: mmdetection's pipeline reads a file
        cv2.imwrite(image, synthetic_image().numpy())
        for ours, theirs in MODELS.items():
            model, pipeline = build(theirs, scale=(WIDTH, HEIGHT))
            shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
            model.load_state_dict(random_weights(shapes, class_logit_std=GOLDEN_CLASS_LOGIT_STD))
            ref = run(model, pipeline, image)
            assert tuple(ref["img_shape"]) == (HEIGHT, WIDTH), ref["img_shape"]  # not resized
            torch.save(cut(ref), os.path.join(OUT, f"{ours}.pt"))
            print(ours, len(ref["final_scores"]), "detections")


if __name__ == "__main__":
    sys.exit(main())
