"""Runs in the reference environment (.venv-mmdet), never imported by the tests' own interpreter.

    python mmdet_reference.py <mmdet config, e.g. scnet/scnet_r50_fpn_1x_coco.py> <out dir> <image>...

Builds mmdetection's model from the config that the mmdet wheel ships, gives it seeded random weights
(see ``randomize``), saves them as an mmdetection checkpoint (<out>/checkpoint.pth) and, for each
image, saves what every stage computes (<out>/<image name>.pth): the resized input, FPN features, RPN
proposals, each box stage's logits and boxes, the semantic and global-context logits, the final
detections and the mask logits of each mask head on the final boxes, all from mmdetection's own code.
"""
import os
import sys

import torch

import mmdet
from mmengine.config import Config
from mmengine.dataset import Compose
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import register_all_modules

from mmdet_seeded import CLASS_LOGIT_STD, MASK_LOGIT_STD, SEED, random_weights


def randomize(model, seed=SEED):
    """Seeded random weights that make every layer matter (mmdet_seeded.random_weights); the box
    classifiers and mask predictors are then calibrated, see ``calibrate``."""
    weights = random_weights({k: list(v.shape) for k, v in model.state_dict().items()}, seed)
    model.load_state_dict(weights)
    return weights


def _output_layers(model):
    """The layers whose outputs are decisions: box classifiers and mask predictors."""
    rh = model.roi_head
    heads = rh.mask_head if isinstance(rh.mask_head, torch.nn.ModuleList) else [rh.mask_head]
    return ([(h.fc_cls, CLASS_LOGIT_STD) for h in rh.bbox_head]
            + [(h.conv_logits, MASK_LOGIT_STD) for h in heads])


@torch.no_grad()
def calibrate(model, pipeline, image_path):
    """Random features share a large common part, so random classifiers pick one class for every RoI
    and random mask predictors one side of 0.5 for every pixel. Measured on one image: each output
    layer gets the bias that centres its outputs and a scale that spreads them to the set std."""
    inputs = {}
    hooks = [layer.register_forward_pre_hook(lambda m, x: inputs.setdefault(m, x[0]))
             for layer, _ in _output_layers(model)]
    run(model, pipeline, image_path)
    for hook in hooks:
        hook.remove()
    for layer, std in _output_layers(model):
        x = inputs[layer]
        x = x.permute(0, 2, 3, 1).flatten(0, 2) if x.dim() == 4 else x  # pixels as samples
        weight = layer.weight.flatten(1)
        mean = x.mean(0)
        spread = ((x - mean) @ weight.T).std()
        layer.weight.mul_(std / spread)
        layer.bias.copy_(-(layer.weight.flatten(1) @ mean))


def build(config_name, scale=None):
    """mmdetection's model (eval mode, no pretrained backbone) and test pipeline, whose Resize targets
    ``scale`` (width, height) instead of the config's when given."""
    register_all_modules(init_default_scope=True)
    path = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", config_name)
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model).eval()
    pipeline = [t for t in cfg.test_dataloader.dataset.pipeline if t["type"] != "LoadAnnotations"]
    for t in pipeline:
        if t["type"] == "Resize" and scale is not None:
            t["scale"] = scale
    return model, Compose(pipeline)


def _context(model, x):
    """The keyword arguments of the ROI head's _bbox_forward: semantic / global-context features."""
    rh = model.roi_head
    kwargs, logits = {}, {}
    if getattr(rh, "with_semantic", False):
        logits["semantic"], kwargs["semantic_feat"] = rh.semantic_head(x)
    if getattr(rh, "with_glbctx", False):
        logits["glbctx"], kwargs["glbctx_feat"] = rh.glbctx_head(x)
    return kwargs, logits


def _box_stages(model, x, proposals, img_meta, kwargs):
    """Each box stage on the boxes the previous one produced, as CascadeRoIHead._refine_roi."""
    rh = model.roi_head
    rois = bbox2roi([proposals])
    stages = []
    for stage in range(rh.num_stages):
        res = rh._bbox_forward(stage, x, rois, **kwargs)
        boxes = rh.bbox_head[stage].regress_by_class(
            rois[:, 1:], res["cls_score"][:, :-1].argmax(1), res["bbox_pred"], img_meta)
        stages.append({"rois": rois[:, 1:].clone(), "cls_logits": res["cls_score"],
                       "deltas": res["bbox_pred"], "boxes": boxes})
        rois = torch.cat([rois[:, :1], boxes], dim=1)
    return stages


def _mask_logits(model, x, boxes, kwargs):
    """(heads, N, classes, 28, 28) mask logits of every mask head on ``boxes`` (mmdetection 3.3.0's
    HTC test path keeps only the last head's, see docs/MMDET.md; its training path gives each)."""
    rh = model.roi_head
    rois = bbox2roi([boxes])
    if type(rh).__name__ == "SCNetRoIHead":
        relayed = rh.feat_relay_head(rh._bbox_forward(-1, x, rois, **kwargs)["relayed_feat"])
        return rh._mask_forward(x, rois, relayed_feat=relayed, **kwargs)["mask_preds"][None]
    if type(rh).__name__ == "HybridTaskCascadeRoIHead":
        return torch.stack([rh._mask_forward(t, x, rois, training=True, **kwargs)["mask_preds"]
                            for t in range(rh.num_stages)])
    return torch.stack([rh._mask_forward(t, x, rois)["mask_preds"] for t in range(rh.num_stages)])


@torch.no_grad()
def run(model, pipeline, image_path):
    data = pipeline({"img_path": image_path, "img_id": 0})
    batch = model.data_preprocessor({"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}, False)
    inputs, samples = batch["inputs"], batch["data_samples"]
    meta = samples[0].metainfo
    x = model.extract_feat(inputs)
    proposals = model.rpn_head.predict(x, samples, rescale=False)
    kwargs, context_logits = _context(model, x)
    stages = _box_stages(model, x, proposals[0].bboxes, meta, kwargs)
    dets = model.roi_head.predict_bbox(x, [meta], proposals, rcnn_test_cfg=model.roi_head.test_cfg,
                                       rescale=False, **kwargs)[0]
    final = model.predict(inputs, samples, rescale=True)[0].pred_instances
    return {
        "image_bgr": data["inputs"],  # the resized uint8 image, BGR, before normalization
        "ori_shape": meta["ori_shape"], "img_shape": meta["img_shape"], "scale_factor": meta["scale_factor"],
        "features": list(x),
        "proposals": proposals[0].bboxes, "proposal_scores": proposals[0].scores,
        "stages": stages,
        **{f"{k}_logits": v for k, v in context_logits.items()},
        "dets_boxes": dets.bboxes, "dets_scores": dets.scores, "dets_labels": dets.labels,
        "mask_logits": _mask_logits(model, x, dets.bboxes, kwargs),
        "final_boxes": final.bboxes, "final_scores": final.scores, "final_labels": final.labels,
        "final_masks": final.masks,
    }


def main(config_name, out_dir, *images):
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model, pipeline = build(config_name)
    randomize(model)
    calibrate(model, pipeline, images[0])
    os.makedirs(out_dir, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": {"config": config_name, "seed": SEED}},
               os.path.join(out_dir, "checkpoint.pth"))
    for image in images:
        name = os.path.splitext(os.path.basename(image))[0]
        torch.save(run(model, pipeline, image), os.path.join(out_dir, f"{name}.pth"))


if __name__ == "__main__":
    main(*sys.argv[1:])
