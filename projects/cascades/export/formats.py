"""Exports a model's inference to ``torch.export`` (.pt2), ONNX (.onnx) or TorchScript by tracing (.ts),
and runs the exported files.

The exported function is detectron2's ``TracingAdapter`` around ``model.inference(..., do_postprocess=
False)`` for one image: input a float32 3 x H x W image (the model's input format, already resized as
the test mapper does), output the flat tuple of the detections' fields in name order
(:data:`OUTPUT_NAMES`): boxes in the input image's pixels, classes, R x 1 x M x M mask probabilities in
the boxes, scores, and the input size. ``detector_postprocess`` (or :func:`to_instances`) pastes the
masks into an image.
"""
import os
from typing import Callable, Sequence, Tuple

import torch
from torch import Tensor, nn

from detectron2.export import TracingAdapter
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import CascadeROIHeads
from detectron2.structures import Boxes, Instances

from .export_safe_variants import export_safe
from .onnx_roi_warp import ONNX_TRANSLATIONS, UnsupportedExport, check_onnx_roi_warp

__all__ = ["FORMATS", "OUTPUT_NAMES", "check_exportable", "export", "inference_adapter", "load", "to_instances"]

FORMATS = {"torch_export": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}
OUTPUT_NAMES = ("pred_boxes", "pred_classes", "pred_masks", "scores", "image_size")
# Input sizes of the dynamic-shape formats (torch_export, onnx): from the smallest whose coarsest FPN level
# (stride 64) has 2 x 2 cells, to beyond detectron2's largest test size (1333).
MIN_SIZE, MAX_SIZE = 128, 2048


def check_exportable(model: nn.Module, fmt: str):
    """Raises :class:`UnsupportedExport` (one line: the part and why) for a model or format that
    cannot be exported, before any work."""
    if fmt not in FORMATS:
        raise UnsupportedExport(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if not isinstance(model, GeneralizedRCNN):
        raise UnsupportedExport(f"{type(model).__name__}: only GeneralizedRCNN models (SCNet, HTC, Cascade Mask "
                                "R-CNN, MNC) are exported")
    if model.training:
        raise UnsupportedExport(f"{type(model).__name__} is in training mode: only inference is exported "
                                "(call model.eval())")
    if type(model.proposal_generator) is not RPN:
        raise UnsupportedExport(f"proposal_generator {type(model.proposal_generator).__name__}: only "
                                "detectron2's RPN has an export-safe proposal selection")
    if not isinstance(model.roi_heads, CascadeROIHeads):
        raise UnsupportedExport(f"roi_heads {type(model.roi_heads).__name__}: only cascade ROI heads "
                                "(CascadeROIHeads and its subclasses) have an export-safe inference")
    if fmt == "onnx":
        check_onnx_roi_warp(model)


def _inference(model, inputs):
    # detectron2's tools/deploy/export_model.py: do_postprocess=False keeps the masks in their boxes.
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def inference_adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    """detectron2's TracingAdapter: ``adapter(image)`` is the model's inference as a tuple of tensors."""
    return TracingAdapter(model, [{"image": image}], _inference)


def export(model: nn.Module, image: Tensor, fmt: str, path: str) -> TracingAdapter:
    """Exports ``model``'s inference on images of ``image``'s size to ``path`` in format ``fmt``.

    The file is written only when the export succeeded (to ``path`` + ".tmp", then renamed)."""
    check_exportable(model, fmt)
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.float32:
        raise ValueError(f"export: the sample image must be a float32 3 x H x W tensor, got "
                         f"{image.dtype} {tuple(image.shape)}")
    adapter = inference_adapter(model, image)
    size = torch.export.Dim.AUTO(min=MIN_SIZE, max=MAX_SIZE)
    dynamic_shapes = (({1: size, 2: size},),)  # TracingAdapter.forward(*args): args[0] is the image
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{ext}"  # torch.export.save wants the .pt2 extension
    with export_safe(model), torch.no_grad():
        if fmt == "torch_export":
            program = torch.export.export(adapter, (image,), dynamic_shapes=dynamic_shapes, strict=False)
            torch.export.save(program, tmp)
        elif fmt == "onnx":
            program = torch.onnx.export(adapter, (image,), dynamo=True, dynamic_shapes=dynamic_shapes,
                                        custom_translation_table=ONNX_TRANSLATIONS, input_names=["image"],
                                        output_names=list(OUTPUT_NAMES), verbose=False)
            program.save(tmp)
        else:
            torch.jit.save(torch.jit.trace(adapter, (image,), check_trace=False), tmp)
    os.replace(tmp, path)
    return adapter


def load(path: str, num_threads: int = 1) -> Callable[[Tensor], Tuple[Tensor, ...]]:
    """The exported model at ``path`` as a function of the image: returns the :data:`OUTPUT_NAMES`
    tensors. Needs the RoI-warp op library (``import cascades._C``) for models that use it; runs on
    the CPU (onnxruntime with ``num_threads`` threads)."""
    if path.endswith(FORMATS["onnx"]):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = num_threads
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return lambda image: tuple(torch.from_numpy(x) for x in session.run(None, {"image": image.numpy()}))
    if path.endswith(FORMATS["torch_export"]):
        module = torch.export.load(path).module()
    elif path.endswith(FORMATS["torchscript"]):
        module = torch.jit.load(path)
    else:
        raise ValueError(f"load: {path!r} is not an exported model ({', '.join(FORMATS.values())})")

    def run(image):
        with torch.no_grad():
            return tuple(module(image))

    return run


def to_instances(outputs: Sequence[Tensor]) -> Instances:
    """The exported model's outputs as the model's own ``Instances`` (before ``detector_postprocess``)."""
    boxes, classes, masks, scores, image_size = outputs
    return Instances(tuple(int(s) for s in image_size), pred_boxes=Boxes(boxes), pred_classes=classes,
                     pred_masks=masks, scores=scores)
