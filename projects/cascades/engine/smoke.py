"""Overrides that shrink any config to a seconds-long CPU run: what CI uses to run every config under
train_net.py and detectron2's tools/lazyconfig_train_net.py, and what a user can use to check a config
before a long job (``./train_net.py --config-file X $(python -m cascades.engine.smoke X out/)``)."""

import os
import sys

from omegaconf import OmegaConf

from cascades.data.default_shapes import CLASS_NAMES, stand_in  # registers the shapes and their stand-ins
from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["smoke_overrides"]

# Datasets that are not here are replaced by the generated shapes (always available) of the same role.
STAND_IN_SPLITS = {"train": "cascades_shapes_train", "test": "cascades_shapes_val"}


def _available(name):
    if name not in DatasetCatalog:
        return False
    meta = MetadataCatalog.get(name).as_dict()
    return meta.get("generated") or all(os.path.exists(meta[k]) for k in ("json_file", "image_root") if k in meta)


def _stand_in(cfg, split):
    """The shapes labelled with the model's number of classes: training needs no more classes than the
    model has (the loss indexes them), evaluation no fewer (the evaluator refuses predicted classes the
    dataset does not have)."""
    num_classes = OmegaConf.select(cfg, "model.roi_heads.num_classes", default=len(CLASS_NAMES))
    return stand_in(STAND_IN_SPLITS[split], num_classes)


def _resize_overrides(cfg, mapper_key, size):
    augmentations = OmegaConf.select(cfg, f"{mapper_key}.augmentations", default=None) or []
    overrides = []
    for i, aug in enumerate(augmentations):
        target = str(aug.get("_target_", ""))
        if "ResizeShortestEdge" in target:
            overrides += [f"{mapper_key}.augmentations.{i}.short_edge_length={size}",
                          f"{mapper_key}.augmentations.{i}.max_size={size * 3 // 2}"]
        elif "ResizeScale" in target:  # large-scale jitter
            overrides += [f"{mapper_key}.augmentations.{i}.target_height={size}",
                          f"{mapper_key}.augmentations.{i}.target_width={size}"]
        elif "FixedSizeCrop" in target:
            overrides += [f"{mapper_key}.augmentations.{i}.crop_size=[{size},{size}]"]
    return overrides


def _norm_overrides(cfg):
    """Random weights make FrozenBN an identity, and an unnormalized 101-layer residual net grows its
    activations to ~1e7 (measured on R-101-FPN at 128 px), which the losses overflow within two
    iterations. GroupNorm keeps the random features finite, as pretrained BN statistics would."""
    backbone = OmegaConf.select(cfg, "model.backbone", default=None)
    if backbone is None:
        return []
    overrides = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "norm" and value == "FrozenBN":
                    overrides.append(f"{path}.{key}=GN")
                else:
                    walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}.{i}")

    walk(OmegaConf.to_container(backbone, resolve=False), "model.backbone")
    return overrides


def smoke_overrides(cfg, output_dir, max_iter=2, size=128):
    """``key=value`` overrides for ``cfg`` (a loaded LazyConfig): ``max_iter`` iterations at short side
    ``size`` on the CPU from random weights, few proposals and RoIs, no data-loading workers, writing to
    ``output_dir``; datasets that are not available here are replaced by the generated shapes labelled for
    the model's classes (see _stand_in), and FrozenBN by GroupNorm (see _norm_overrides)."""
    overrides = [f"train.max_iter={max_iter}", f"train.output_dir={output_dir}", "train.device=cpu", "train.log_period=1",
                 "train.init_checkpoint=", "train.eval_period=0", "train.amp.enabled=False",
                 f"train.checkpointer.period={max_iter}", "dataloader.train.total_batch_size=2"]
    for split in ("train", "test"):
        if OmegaConf.select(cfg, f"dataloader.{split}") is None:
            continue
        overrides.append(f"dataloader.{split}.num_workers=0")
        overrides += _resize_overrides(cfg, f"dataloader.{split}.mapper", size)
        names = cfg.dataloader[split].dataset.names
        if all(_available(n) for n in ([names] if isinstance(names, str) else names)):
            continue
        overrides.append(f"dataloader.{split}.dataset.names={_stand_in(cfg, split)}")
        # The loader is named through the shapes module so that a fresh process (e.g. detectron2's own
        # trainer) imports it, which registers the shapes and their stand-ins.
        overrides.append(f"dataloader.{split}.dataset._target_=cascades.data.default_shapes.get_detection_dataset_dicts")
        mapper = cfg.dataloader[split].get("mapper")
        if split == "train" and mapper is not None:
            # The shapes' masks are RLE (occluded shapes can have holes), not polygons.
            prefix = "" if "instance_mask_format" in mapper else "+"
            overrides.append(f"{prefix}dataloader.train.mapper.instance_mask_format=bitmask")
    overrides += _norm_overrides(cfg)
    rpn = OmegaConf.select(cfg, "model.proposal_generator", default=None)
    if rpn is not None and "post_nms_topk" in rpn:
        overrides += ["model.proposal_generator.pre_nms_topk=[200,100]",
                      "model.proposal_generator.post_nms_topk=[50,25]"]
    heads = OmegaConf.select(cfg, "model.roi_heads", default=None)
    if heads is not None and "batch_size_per_image" in heads:
        overrides.append("model.roi_heads.batch_size_per_image=32")
    # Random weights give low-confidence boxes everywhere: keep the 10 best of each image, whatever
    # their score, so that evaluation is short but always has masks to score.
    predictors = [("box_predictor", heads.box_predictor)] if heads is not None and "box_predictor" in heads else []
    predictors += [(f"box_predictors.{i}", p) for i, p in enumerate(heads.get("box_predictors") or [])] if heads else []
    for key, predictor in predictors:
        for name, value in (("test_topk_per_image", 10), ("test_score_thresh", 0.0)):
            overrides.append(f"{'' if name in predictor else '+'}model.roi_heads.{key}.{name}={value}")
    return overrides


if __name__ == "__main__":
    from .config import load_config

    if len(sys.argv) != 3:
        sys.exit("usage: python -m cascades.engine.smoke CONFIG_FILE OUTPUT_DIR")
    print(" ".join(smoke_overrides(load_config(sys.argv[1]), sys.argv[2])))
