"""Exports a model's inference to ``torch.export`` (.pt2), ONNX (.onnx) or TorchScript by tracing (.ts),
and runs the exported files.

The exported function is detectron2's ``TracingAdapter`` around ``model.inference(..., do_postprocess=
False)`` for one image: input a float32 3 x H x W image (the model's input format, already resized as
the test mapper does), output the flat tuple of the detections' fields in name order, then the input
size (:func:`output_names`): boxes in the input image's pixels, classes, R x 1 x M x M mask probabilities
in the boxes (MNC: the voted masks, in the frames ``pred_mask_frames``), scores. detectron2's
``detector_postprocess`` pastes the masks into an image (MNC: with the frames as boxes).
"""
import os
import traceback
from typing import Callable, List, Tuple

import torch
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

from detectron2.export import TracingAdapter
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.roi_heads import CascadeROIHeads

from ..modeling.mnc_roi_heads import MNCROIHeads
from .export_safe_variants import _boxes, export_safe
from .onnx_roi_warp import ONNX_TRANSLATIONS, check_onnx_roi_warp
from .unsupported import UnsupportedExport

__all__ = ["FORMATS", "check_exportable", "export", "inference_adapter", "load", "output_names"]

FORMATS = {"torch_export": ".pt2", "onnx": ".onnx", "torchscript": ".ts"}
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
    rpn = model.proposal_generator
    if not (isinstance(rpn, RPN) and "find_top_rpn_proposals" in type(rpn).predict_proposals.__code__.co_names):
        raise UnsupportedExport(f"proposal_generator {type(rpn).__name__}: only detectron2's RPN selection "
                                "(find_top_rpn_proposals) has an export-safe variant")
    if not isinstance(model.roi_heads, (CascadeROIHeads, MNCROIHeads)):
        raise UnsupportedExport(f"roi_heads {type(model.roi_heads).__name__}: only cascade ROI heads "
                                "(CascadeROIHeads and its subclasses, MNCROIHeads) have an export-safe inference")
    if fmt == "onnx":
        check_onnx_roi_warp(model)


def _inference(model, inputs):
    # detectron2's tools/deploy/export_model.py: do_postprocess=False keeps the masks in their boxes.
    instances = model.inference(inputs, do_postprocess=False)[0]
    if instances.has("pred_voted_masks"):  # MNC: masks in frames of their own, as two tensors
        voted = instances.pred_voted_masks
        instances.remove("pred_voted_masks")
        instances.pred_masks = voted.masks[:, None]
        instances.pred_mask_frames = voted.frames.tensor
        # Of detectron2's class (the export-safe boxes are a subclass): the output schema names it.
        instances.pred_boxes = _boxes(instances.pred_boxes.tensor)
    return [{"instances": instances}]


def inference_adapter(model: nn.Module, image: Tensor) -> TracingAdapter:
    """detectron2's TracingAdapter: ``adapter(image)`` is the model's inference as a tuple of tensors."""
    return TracingAdapter(model, [{"image": image}], _inference)


def output_names(adapter: TracingAdapter) -> List[str]:
    """The names of the adapter's outputs (once it ran): the detections' fields, then "image_size"."""
    instances_schema = adapter.outputs_schema.schemas[0].schemas[0]
    return list(instances_schema.keys) + ["image_size"]


def _data_dependent_branch(error: Exception) -> UnsupportedExport:
    """The model's line that branches on a value known only when the model runs, as one line."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f"{os.sep}torch{os.sep}" not in f.filename]
    where = f"{os.path.relpath(frames[-1].filename)}:{frames[-1].lineno} `{frames[-1].line}`" if frames else "the model"
    return UnsupportedExport(f"{where} branches on a value known only when the model runs (e.g. the number of "
                             "detections), which torch.export and ONNX cannot record; TorchScript tracing can")


def export(model: nn.Module, image: Tensor, fmt: str, path: str) -> TracingAdapter:
    """Exports ``model``'s inference to ``path`` in format ``fmt``: for images of any size in
    [MIN_SIZE, MAX_SIZE] (torch_export, onnx), or of ``image``'s size and of others as far as the traced
    path holds (torchscript). The file is written only when the export succeeded."""
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
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(adapter, (image,), check_trace=False), tmp)
        else:
            try:
                program = torch.export.export(adapter, (image,), dynamic_shapes=dynamic_shapes, strict=False)
            except GuardOnDataDependentSymNode as e:
                raise _data_dependent_branch(e) from e
            if fmt == "torch_export":
                torch.export.save(program, tmp)
            else:
                onnx_program = torch.onnx.export(
                    program, (image,), dynamo=True, custom_translation_table=ONNX_TRANSLATIONS,
                    input_names=["image"], output_names=output_names(adapter), verbose=False,
                )
                onnx_program.save(tmp)
    os.replace(tmp, path)
    return adapter


def load(path: str, num_threads: int = 1) -> Callable[[Tensor], Tuple[Tensor, ...]]:
    """The exported model at ``path`` as a function of the image, returning its output tensors. Needs
    the RoI-warp op library (``torch.ops.load_library`` of ``cascades/_C*.so``, or ``import
    cascades._C``) for models that use it; runs on the CPU (onnxruntime with ``num_threads`` threads)."""
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
