"""Mutants of mixed precision (the RoI warp under autocast, the CPU AMP trainer) and of activation
checkpointing."""
from mutants import Mutant

ROI_WARP = "projects/cascades/layers/roi_warp.py"
AMP = "projects/cascades/engine/amp.py"
CHECKPOINTING = "projects/cascades/modeling/activation_checkpointing.py"
AUTOCAST_TESTS = "tests/layers/test_roi_warp_autocast.py"
CHECKPOINTING_TESTS = "tests/modeling/test_activation_checkpointing.py"

MUTANTS = [
    Mutant(
        name="amp_rois_rounded_to_low_precision",
        concept="under autocast the RoI warp runs in float32: the boxes keep their float32 coordinates",
        path=ROI_WARP,
        old="if isinstance(rois, Tensor) and isinstance(input, Tensor) and not _autocast_on(input):",
        new="if isinstance(rois, Tensor) and isinstance(input, Tensor):",
        tests=[f"{AUTOCAST_TESTS}::test_cpu_autocast_runs_float32_and_returns_input_dtype"],
    ),
    Mutant(
        name="amp_low_precision_refused_under_autocast",
        concept="the RoI warp takes bfloat16/float16 features on the CPU under autocast (its autocast "
                "kernel upcasts them)",
        path=ROI_WARP,
        old="low_precision = input.is_cuda or _autocast_on(input)",
        new="low_precision = input.is_cuda",
        tests=[AUTOCAST_TESTS, "tests/engine/test_amp.py::test_bfloat16_steps_stay_finite[mnc]"],
    ),
    Mutant(
        name="amp_cpu_forward_without_autocast",
        concept="--amp on the CPU runs the forward pass under bfloat16 autocast",
        path=AMP,
        old='with torch.autocast("cpu", dtype=self.precision):',
        new='with torch.autocast("cpu", dtype=self.precision, enabled=False):',
        tests=["tests/engine/test_amp.py::test_bfloat16_steps_stay_finite[scnet]"],
    ),
    Mutant(
        name="amp_checkpointing_not_applied",
        concept="a checkpointed part keeps only its inputs in the forward pass",
        path=CHECKPOINTING,
        old="if not (self.training and torch.is_grad_enabled()):",
        new="if True:",
        tests=[f"{CHECKPOINTING_TESTS}::test_same_step_with_fewer_saved_activations"],
    ),
    Mutant(
        name="amp_checkpointing_updates_bn_twice",
        concept="the recomputation leaves the BatchNorm running statistics as the forward pass set them",
        path=CHECKPOINTING,
        old="return contextlib.nullcontext(), _buffers_restored(module)",
        new="return contextlib.nullcontext(), contextlib.nullcontext()",
        tests=[f"{CHECKPOINTING_TESTS}::test_running_statistics_of_a_checkpointed_stage_updated_once",
               f"{CHECKPOINTING_TESTS}::test_same_step_with_fewer_saved_activations"],
    ),
]
