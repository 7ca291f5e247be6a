"""mmdetection state dicts of SCNet, HTC and Cascade Mask R-CNN -> this project's module names.

mmdetection 2 and 3 name these models' modules identically (``roi_head.bbox_head.<stage>...``); the
layout of mmdetection 1 (heads at the top level, background as class 0) is refused with the command
that upgrades it. The conversion is a renaming only: the layers compute the same functions once the
config follows mmdetection's conventions (``cascades.checkpoint.mmdet_conventions``).
"""
import logging
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import torch

__all__ = [
    "MMDetConversionError",
    "MMDetModel",
    "convert_mmdet_state_dict",
    "describe_mmdet_model",
    "CLASS_SPECIFIC_KEYS",
    "check_fits",
    "fit_to_model",
    "mmdet_tensor_names",
    "refuse_mmdet_layout",
    "refuse_mmdet_state_dict",
]


class MMDetConversionError(ValueError):
    """The state dict is not one of the supported mmdetection models, or does not fit the target."""


class MMDetModel(NamedTuple):
    """What a checkpoint holds, read from its tensors."""

    architecture: str  # "scnet", "htc" or "cascade_mask_rcnn"
    depth: int  # 50 or 101
    groups: int  # 1 for ResNet, 32/64 for ResNeXt
    width_per_group: int  # 64 for ResNet, 4 for ResNeXt-101 32x4d / 64x4d
    num_classes: int  # foreground classes (the box classifier has one more, background last)
    semantic: bool  # HTC's semantic branch is present

    @property
    def backbone(self) -> str:
        if self.groups == 1:
            return f"R-{self.depth}"
        return f"X-{self.depth}-{self.groups}x{self.width_per_group}d"


logger = logging.getLogger(__name__)

_Target = Union[str, Callable[[re.Match], str]]


def _plus(group: int, offset: int) -> Callable[[re.Match], str]:
    return lambda m: str(int(m[group]) + offset)


def _sub(template: str, **computed: Callable[[re.Match], str]) -> Callable[[re.Match], str]:
    """A target built from the match: ``{1}`` is group 1, ``{name}`` a computed field."""
    return lambda m: template.format(*([m[0]] + list(m.groups())), **{k: f(m) for k, f in computed.items()})


_BN = r"(weight|bias|running_mean|running_var)"
_WB = r"(weight|bias)"
# (mmdetection key pattern, this project's key). Patterns are matched whole, in this order.
_RULES: List[Tuple[str, _Target]] = [
    # ResNet / ResNeXt (pytorch style: mmdetection's convN/bnN are detectron2's convN and convN.norm)
    (r"backbone\.conv1\.weight", "backbone.bottom_up.stem.conv1.weight"),
    (rf"backbone\.bn1\.{_BN}", _sub("backbone.bottom_up.stem.conv1.norm.{1}")),
    (r"backbone\.layer(\d)\.(\d+)\.conv(\d)\.weight",
     _sub("backbone.bottom_up.res{s}.{2}.conv{3}.weight", s=_plus(1, 1))),
    (rf"backbone\.layer(\d)\.(\d+)\.bn(\d)\.{_BN}",
     _sub("backbone.bottom_up.res{s}.{2}.conv{3}.norm.{4}", s=_plus(1, 1))),
    (r"backbone\.layer(\d)\.0\.downsample\.0\.weight",
     _sub("backbone.bottom_up.res{s}.0.shortcut.weight", s=_plus(1, 1))),
    (rf"backbone\.layer(\d)\.0\.downsample\.1\.{_BN}",
     _sub("backbone.bottom_up.res{s}.0.shortcut.norm.{2}", s=_plus(1, 1))),
    # FPN: mmdetection's level i is detectron2's p(i+2)
    (rf"neck\.lateral_convs\.(\d)\.conv\.{_WB}", _sub("backbone.fpn_lateral{p}.{2}", p=_plus(1, 2))),
    (rf"neck\.fpn_convs\.(\d)\.conv\.{_WB}", _sub("backbone.fpn_output{p}.{2}", p=_plus(1, 2))),
    # RPN
    (rf"rpn_head\.rpn_conv\.{_WB}", _sub("proposal_generator.rpn_head.conv.{1}")),
    (rf"rpn_head\.rpn_cls\.{_WB}", _sub("proposal_generator.rpn_head.objectness_logits.{1}")),
    (rf"rpn_head\.rpn_reg\.{_WB}", _sub("proposal_generator.rpn_head.anchor_deltas.{1}")),
    # Box stages (Shared2FCBBoxHead / SCNetBBoxHead)
    (rf"roi_head\.bbox_head\.(\d)\.shared_fcs\.(\d)\.{_WB}",
     _sub("roi_heads.box_head.{1}.fc{k}.{3}", k=_plus(2, 1))),
    (rf"roi_head\.bbox_head\.(\d)\.fc_cls\.{_WB}", _sub("roi_heads.box_predictor.{1}.cls_score.{2}")),
    (rf"roi_head\.bbox_head\.(\d)\.fc_reg\.{_WB}", _sub("roi_heads.box_predictor.{1}.bbox_pred.{2}")),
    # One mask head per stage (Cascade Mask R-CNN's FCNMaskHead, HTC's HTCMaskHead)
    (rf"roi_head\.mask_head\.(\d)\.convs\.(\d+)\.conv\.{_WB}",
     _sub("roi_heads.mask_head.{1}.mask_fcn{k}.{3}", k=_plus(2, 1))),
    (rf"roi_head\.mask_head\.(\d)\.upsample\.{_WB}", _sub("roi_heads.mask_head.{1}.deconv.{2}")),
    (rf"roi_head\.mask_head\.(\d)\.conv_logits\.{_WB}", _sub("roi_heads.mask_head.{1}.predictor.{2}")),
    (rf"roi_head\.mask_head\.(\d)\.conv_res\.conv\.{_WB}",
     _sub("roi_heads.mask_head.{1}.prev_stage_proj.{2}")),
    # SCNet's single mask head: 12 convs as 6 SimplifiedBasicBlocks
    (rf"roi_head\.mask_head\.convs\.(\d+)\.conv(1|2)\.{_WB}",
     _sub("roi_heads.mask_head.0.convs.res_block{b}.conv{2}.{3}", b=_plus(1, 1))),
    (rf"roi_head\.mask_head\.upsample\.{_WB}", _sub("roi_heads.mask_head.0.deconv.{1}")),
    (rf"roi_head\.mask_head\.conv_logits\.{_WB}", _sub("roi_heads.mask_head.0.predictor.{1}")),
    # Semantic branch (HTC: plain convs, SCNet: SimplifiedBasicBlocks)
    (rf"roi_head\.semantic_head\.lateral_convs\.(\d)\.conv\.{_WB}",
     _sub("roi_heads.semantic_head.lateral_convs.{1}.{2}")),
    (rf"roi_head\.semantic_head\.convs\.(\d)\.conv\.{_WB}",
     _sub("roi_heads.semantic_head.convs.conv{k}.{2}", k=_plus(1, 1))),
    (rf"roi_head\.semantic_head\.convs\.(\d)\.conv(1|2)\.{_WB}",
     _sub("roi_heads.semantic_head.convs.res_block{b}.conv{2}.{3}", b=_plus(1, 1))),
    (rf"roi_head\.semantic_head\.conv_embedding\.conv\.{_WB}", _sub("roi_heads.semantic_head.embedding.{1}")),
    (rf"roi_head\.semantic_head\.conv_logits\.{_WB}", _sub("roi_heads.semantic_head.predictor.{1}")),
    # SCNet's global context and feature relay
    (rf"roi_head\.glbctx_head\.convs\.(\d)\.conv(1|2)\.{_WB}",
     _sub("roi_heads.global_context_head.convs.res_block{b}.conv{2}.{3}", b=_plus(1, 1))),
    (rf"roi_head\.glbctx_head\.fc\.{_WB}", _sub("roi_heads.global_context_head.classifier.{1}")),
    (rf"roi_head\.feat_relay_head\.fc\.{_WB}", _sub("roi_heads.feature_relays.0.fc.{1}")),
]
_COMPILED = [(re.compile(p), t) for p, t in _RULES]
# BatchNorm's step counters: the frozen BN of the converted models has none, and they are unused
# at inference. Consumed by design.
_DROPPED = re.compile(r".*\.num_batches_tracked")

# Tensors whose first dimension counts classes (foreground, or foreground + background); dropped when
# fine-tuning on another label set. The semantic head's 183 COCO-stuff classes are a label set too.
CLASS_SPECIFIC_KEYS = re.compile(
    r"roi_heads\.(box_predictor\.\d+\.cls_score|mask_head\.\d+\.predictor|global_context_head\.classifier"
    r"|semantic_head\.predictor)\.(weight|bias)"
)


# Module names that only mmdetection's detectors use (ours and detectron2's are backbone.bottom_up,
# proposal_generator and roi_heads).
_MMDET_MODULES = ("backbone.layer1.", "neck.lateral_convs.", "rpn_head.", "roi_head.", "bbox_head.")


def mmdet_tensor_names(checkpoint) -> List[str]:
    """The tensors of ``checkpoint`` (a state dict, or mmdetection's ``{"state_dict": ..., "meta": ...}``)
    that are named as in mmdetection's detectors; empty for any other checkpoint."""
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        return []
    return sorted(k for k in state_dict if isinstance(k, str) and k.startswith(_MMDET_MODULES))


def refuse_mmdet_layout(checkpoint, source: str = "the checkpoint") -> None:
    """Raises :class:`MMDetConversionError` when ``checkpoint`` is an unconverted mmdetection
    checkpoint, naming the ``mmdet://`` path that converts it: none of its tensors would fit."""
    names = mmdet_tensor_names(checkpoint)
    if names:
        via = f"mmdet://{source}" if source != "the checkpoint" else "mmdet://<its path or URL>"
        raise MMDetConversionError(
            f"{source} is an mmdetection checkpoint (tensors named {_names(names, 2)}), which this model's "
            f"names do not match: load it as {via} to convert it")


def refuse_mmdet_state_dict(module, state_dict, prefix, *args) -> None:
    """A ``load_state_dict`` pre-hook (``model.register_load_state_dict_pre_hook``) that refuses an
    unconverted mmdetection state dict, which any checkpointer loading leniently (detectron2's
    ``DetectionCheckpointer`` in ``tools.lazyconfig_train_net``) would otherwise load as nothing."""
    if not prefix:
        refuse_mmdet_layout(state_dict)


def _rename(key: str) -> Optional[str]:
    for pattern, target in _COMPILED:
        m = pattern.fullmatch(key)
        if m:
            return target if isinstance(target, str) else target(m)
    return None


def _names(keys, limit=8) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def describe_mmdet_model(state_dict: Dict[str, torch.Tensor]) -> MMDetModel:
    """Reads the architecture, backbone and class count from an mmdetection state dict; raises
    :class:`MMDetConversionError` (one line) for anything else."""
    keys = set(state_dict)
    if any(k.startswith(("bbox_head.", "mask_head.", "semantic_head.")) for k in keys):
        raise MMDetConversionError(
            "This is an mmdetection 1.x checkpoint (heads at the top level, background as class 0): "
            "upgrade it with mmdetection's tools/model_converters/upgrade_model_version.py first")
    stages = sorted({int(m[1]) for k in keys if (m := re.match(r"roi_head\.bbox_head\.(\d)\.fc_cls\.", k))})
    has_mask = any(k.startswith("roi_head.mask_head.") for k in keys)
    if stages != [0, 1, 2] or not has_mask or "backbone.layer1.0.conv2.weight" not in keys:
        found = sorted({".".join(k.split(".")[:2]) for k in keys})
        raise MMDetConversionError(
            "Unsupported architecture: expected an mmdetection SCNet, HTC or Cascade Mask R-CNN with a "
            f"ResNet/ResNeXt-FPN backbone (3 box stages roi_head.bbox_head.{{0,1,2}}, a mask head); "
            f"the checkpoint's modules are {_names(found)}")
    if "roi_head.glbctx_head.fc.weight" in keys or "roi_head.mask_head.conv_logits.weight" in keys:
        architecture = "scnet"
    elif "roi_head.mask_head.1.conv_res.conv.weight" in keys:
        architecture = "htc"
    else:
        architecture = "cascade_mask_rcnn"
    conv2 = state_dict["backbone.layer1.0.conv2.weight"]
    width, in_per_group = conv2.shape[0], conv2.shape[1]
    groups = width // in_per_group
    blocks = {int(m[1]) for k in keys if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
    depth = {6: 50, 23: 101}.get(len(blocks))
    if depth is None:
        raise MMDetConversionError(
            f"Unsupported backbone: expected ResNet/ResNeXt-50 or -101 (6 or 23 blocks in layer3), "
            f"found {len(blocks)} blocks")
    return MMDetModel(
        architecture=architecture,
        depth=depth,
        groups=groups,
        width_per_group=width // groups,
        num_classes=state_dict["roi_head.bbox_head.0.fc_cls.weight"].shape[0] - 1,
        semantic="roi_head.semantic_head.conv_logits.weight" in keys,
    )


def convert_mmdet_state_dict(
    state_dict: Dict[str, torch.Tensor], target: Optional[Dict[str, torch.Tensor]] = None
) -> Dict[str, torch.Tensor]:
    """
    Renames every tensor of an mmdetection SCNet/HTC/Cascade Mask R-CNN state dict to this project's
    names. Any key that no rule knows is an error naming it; with ``target`` (the state dict of the
    model to load into, or one of the same keys and shapes), every target tensor must be filled with
    one of the same shape, else the error names the missing, extra or mis-shaped keys.
    """
    describe_mmdet_model(state_dict)
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if _DROPPED.fullmatch(key):
            continue
        new_key = _rename(key)
        if new_key is None:
            unknown.append(key)
        else:
            converted[new_key] = value
    if unknown:
        raise MMDetConversionError(f"{len(unknown)} mmdetection tensors have no counterpart here: {_names(unknown)}")
    if target is not None:
        check_fits(converted, target)
    return converted


def check_fits(converted: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor]) -> None:
    """Raises :class:`MMDetConversionError` unless ``converted`` fills exactly the tensors of
    ``target`` (BatchNorm step counters aside) with the same shapes."""
    wanted = {k for k in target if not k.endswith("num_batches_tracked")}
    missing, extra = wanted - set(converted), set(converted) - wanted
    shapes = [f"{k} {tuple(converted[k].shape)} vs {tuple(target[k].shape)}"
              for k in sorted(wanted & set(converted)) if converted[k].shape != target[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model tensors not in the checkpoint: {_names(missing)}")
    if extra:
        problems.append(f"{len(extra)} checkpoint tensors not in the model: {_names(extra)}")
    if shapes:
        problems.append(f"{len(shapes)} shapes differ (checkpoint vs model): {'; '.join(shapes[:5])}")
    if problems:
        raise MMDetConversionError("The converted checkpoint does not fit the model: " + "; ".join(problems))


def fit_to_model(
    converted: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor], *, fine_tuning: bool, source: str = "the checkpoint"
) -> Dict[str, torch.Tensor]:
    """
    ``converted`` as it loads into the model whose state dict is ``target``. A different class count
    is an error for inference; for fine-tuning, the class-specific layers are left out (they keep the
    model's initialization) with one warning. Anything else that does not fit is an error.
    """
    mismatched = sorted(k for k in converted if CLASS_SPECIFIC_KEYS.fullmatch(k) and k in target
                        and converted[k].shape != target[k].shape)
    if mismatched:
        first = mismatched[0]
        what = f"{first} {tuple(converted[first].shape)} vs {tuple(target[first].shape)} in the model"
        cls = "roi_heads.box_predictor.0.cls_score.bias"
        if cls in mismatched:
            what = f"{converted[cls].shape[0] - 1} classes vs {target[cls].shape[0] - 1} in the model"
        if not fine_tuning:
            raise MMDetConversionError(
                f"{source} has another label set ({what}): set the model's class counts to the "
                "checkpoint's to run it, or load it as a training initialization to fine-tune")
        logger.warning(f"Fine-tuning from {source} ({what}): its {len(mismatched)} class-specific tensors "
                       f"are left out and keep the model's initialization ({_names(mismatched, 3)})")
        converted = {k: v for k, v in converted.items() if k not in mismatched}
        target = {k: v for k, v in target.items() if k not in mismatched}
    check_fits(converted, target)
    return converted
