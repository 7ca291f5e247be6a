"""Mutants of the RoI warping layer (MNC Eqs. 6-9) and its pooler."""
from mutants import Mutant

ROI_WARP = "projects/cascades/layers/roi_warp.py"
POOLER = "projects/cascades/layers/roi_warp_pooler.py"
TESTS = "tests/layers/test_roi_warp.py"

MUTANTS = [
    Mutant(
        name="layers_no_box_gradient",
        concept="Eq. 9: the RoI warp back-propagates into the box coordinates",
        path=ROI_WARP,
        old="grad_rois if ctx.needs_input_grad[1] else None,",
        new="None,",
        tests=[f"{TESTS}::test_gradcheck_features_and_boxes"],
    ),
    Mutant(
        name="layers_pooler_misaligned",
        concept="RoIWarpPooler is detectron2's ROIPooler (ROIAlignV2 half-pixel alignment) with the warp",
        path=POOLER,
        old="RoIWarp(warp_size, spatial_scale=scale, aligned=aligned,",
        new="RoIWarp(warp_size, spatial_scale=scale, aligned=not aligned,",
        tests=["tests/layers/test_roi_warp_pooler.py"],
    ),
]
