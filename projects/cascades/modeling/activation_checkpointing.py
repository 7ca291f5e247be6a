"""Activation checkpointing of a built model's heavy parts (``train.activation_checkpointing``).

A checkpointed part keeps only its inputs during the forward pass and recomputes its activations in the
backward pass (``torch.utils.checkpoint``, non-reentrant): less memory for one more forward of that part.
Checkpointing is applied to the built model in place, as detectron2's ViT applies ``checkpoint_wrapper``
to its blocks when ``use_act_checkpoint`` is set; parameter names, state dicts and ``isinstance`` stay as
they are (each part's class is swapped for a subclass that checkpoints the methods holding its layers).

Parts, and the segments each one checkpoints (a segment's activations are recomputed together, so
that the backward pass holds one segment's at a time):

- ``backbone``: the ResNet bottom-up's stem and each of its stages (res2-res5): a stage's blocks are
  recomputed together, so that only the stages' inputs are kept (keeping every block's input, as
  per-block segments do, kept 0.9 GB of SCNet R-50-FPN's 2.7 GB of activations at 800 x 800);
- ``rpn_head``: the RPN head (its convolutions on every level);
- ``box_head``: every box head (one per cascade stage);
- ``mask_head``: each residual pair of SCNet's 12-conv mask head; every other mask head (HTC's per
  stage, Cascade's, MNC's) whole;
- ``semantic_head``: the semantic segmentation branch of SCNet, HTC and Cascade + semantic.

Only the layers are checkpointed, never a loss: a recomputation must not log metrics again. BatchNorm
layers update their running statistics in every forward in training mode, the recomputation included:
the buffers of a checkpointed module are restored after its recomputation, so that one training step
updates them once, as without checkpointing.
"""

import contextlib
import functools
from typing import Callable, Dict, Iterable, List, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.checkpoint import checkpoint

from detectron2.modeling.backbone import ResNet
from detectron2.modeling.roi_heads.mask_head import BaseMaskRCNNHead

from .htc_mask_head import HTCMaskHead
from .scnet_mask_head import SCNetMaskHead

__all__ = ["PARTS", "apply_activation_checkpointing", "check_parts", "configured_parts"]

CONFIG_KEY = "train.activation_checkpointing"


def _roi_heads(model, name: str) -> List[nn.Module]:
    heads = getattr(getattr(model, "roi_heads", None), name, None)
    if heads is None:
        raise ValueError(f"{CONFIG_KEY}: {type(model).__name__} has no roi_heads.{name} to checkpoint")
    return list(heads) if isinstance(heads, nn.ModuleList) else [heads]


def _backbone_stages(model) -> List[nn.Module]:
    bottom_up = getattr(model.backbone, "bottom_up", model.backbone)
    if not isinstance(bottom_up, ResNet):
        raise ValueError(f"{CONFIG_KEY}: 'backbone' checkpoints the stages of a ResNet (bottom-up) backbone; "
                         f"this model's is a {type(bottom_up).__name__}")
    return [bottom_up.stem, *bottom_up.stages]


def _rpn_head(model) -> List[nn.Module]:
    head = getattr(getattr(model, "proposal_generator", None), "rpn_head", None)
    if head is None:
        raise ValueError(f"{CONFIG_KEY}: {type(model).__name__} has no proposal_generator.rpn_head to checkpoint")
    return [head]


def _mask_head_segments(model) -> List[nn.Module]:
    return [segment for head in _roi_heads(model, "mask_head")
            for segment in (list(head.convs) if isinstance(head, SCNetMaskHead) else [head])]


PARTS: Dict[str, Callable[[nn.Module], List[nn.Module]]] = {
    "backbone": _backbone_stages,
    "rpn_head": _rpn_head,
    "box_head": lambda model: _roi_heads(model, "box_head"),
    "mask_head": _mask_head_segments,
    "semantic_head": lambda model: _roi_heads(model, "semantic_head"),
}


def check_parts(parts: Iterable[str]) -> List[str]:
    """The part names, checked: a list of names from :data:`PARTS`."""
    if isinstance(parts, str) or not isinstance(parts, Sequence):
        raise ValueError(f"{CONFIG_KEY} must be a list of part names (of {', '.join(PARTS)}), got {parts!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"{CONFIG_KEY}: unknown part {unknown[0]!r}; the parts are {', '.join(PARTS)}")
    return list(dict.fromkeys(parts))


def apply_activation_checkpointing(model: nn.Module, parts: Iterable[str]) -> nn.Module:
    """Checkpoints ``parts`` of ``model`` (built, not yet wrapped by DistributedDataParallel) in place;
    returns ``model``. Raises ValueError naming an unknown part or one the model does not have."""
    modules = [m for part in check_parts(parts) for m in PARTS[part](model)]
    for module in modules:
        if not hasattr(type(module), "_checkpointed_methods"):
            module.__class__ = _checkpointed_class(type(module))
    return model


def _layer_methods(cls) -> tuple:
    """The methods that hold a module's layers: a mask head's ``forward`` also computes its loss, and
    HTC's ROI heads call the two halves of its layers directly."""
    if issubclass(cls, HTCMaskHead):
        return ("mask_features", "predict")
    if issubclass(cls, BaseMaskRCNNHead):
        return ("layers",)
    return ("forward",)


@functools.lru_cache(maxsize=None)
def _checkpointed_class(cls):
    methods = _layer_methods(cls)
    body = {name: _checkpointed(getattr(cls, name)) for name in methods}
    return type(f"Checkpointed{cls.__name__}", (cls,), {"__module__": cls.__module__, "_checkpointed_methods": methods,
                                                        **body})


def _checkpointed(method):
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        if not (self.training and torch.is_grad_enabled()):
            return method(self, *args, **kwargs)
        contexts = functools.partial(_recomputation_contexts, self)
        return checkpoint(method, self, *args, use_reentrant=False, context_fn=contexts, **kwargs)

    return run


def _recomputation_contexts(module):
    # (around the forward, around the recomputation)
    return contextlib.nullcontext(), _buffers_restored(module)


@contextlib.contextmanager
def _buffers_restored(module: nn.Module):
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        for buffer, value in saved:
            # .data: the recomputed graph saved these tensors; their autograd version must not change.
            buffer.data.copy_(value)


def configured_parts(cfg) -> List[str]:
    """The checked parts of ``train.activation_checkpointing`` (none when the config has no such key)."""
    return check_parts(OmegaConf.select(cfg, CONFIG_KEY, default=None) or [])
