"""The studies that tools/study.py runs by name: sections of rows, each row a config with overrides and
the seeds to train it with. A row's name names its records (docs/studies/<study>/<row>__seed<k>.json),
so renaming a row orphans its records."""

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

__all__ = ["Row", "Section", "Study", "STUDIES", "override"]


@dataclass(frozen=True)
class Row:
    name: str
    config: str  # a path relative to the repository root
    overrides: Tuple[str, ...] = ()
    seeds: Tuple[int, ...] = (1, 2, 3)
    label: str = ""  # what the table and plot call it; the name when empty

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Section:
    title: str
    rows: Tuple[Row, ...]
    baseline: Optional[str] = None  # the row the others are compared with


@dataclass(frozen=True)
class Study:
    name: str
    sections: Tuple[Section, ...]
    description: str = ""
    rows: Tuple[Row, ...] = field(init=False)

    def __post_init__(self):
        rows = tuple(r for s in self.sections for r in s.rows)
        names = [r.name for r in rows]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"study {self.name!r}: row names must be unique; repeated: {', '.join(duplicates)}")
        for s in self.sections:
            if s.baseline is not None and s.baseline not in {r.name for r in s.rows}:
                raise ValueError(f"study {self.name!r}, section {s.title!r}: baseline {s.baseline!r} is not one "
                                 "of its rows")
        object.__setattr__(self, "rows", rows)


def _hydra(value) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def override(key: str, value, add: bool = False) -> str:
    """A ``key=value`` command-line override; dicts with ``_target_`` build objects as a config file's
    ``L(...)`` does. ``add`` for a key the config does not have (``+key=value``)."""
    return f"{'+' if add else ''}{key}={_hydra(value)}"


def _small(dataset: str, model: str) -> str:
    return f"configs/{dataset}/{model}_R_18_FPN_small.py"


def _balloon_rows(models: Sequence[Tuple[str, str]], prefix="balloon-") -> Tuple[Row, ...]:
    return tuple(Row(prefix + model, _small("Balloon", model), label=label) for model, label in models)


# The SCNet paper's ablation (Table 2) on the small balloon recipe, each row the baseline (Cascade Mask
# R-CNN + semantic) with one component, as configs/COCO-InstanceSegmentation/scnet_ablation_* do at full
# size. The components carry the small configs' sizes: FPN and heads of 64 channels, box fc 256, 1 class.
_WIDTH, _BOX_FC, _BALLOON_CLASSES = 64, 256, 1
_FEATURE_RELAY = {"_target_": "cascades.modeling.FeatureRelayHead", "in_channels": _BOX_FC,
                  "out_channels": _WIDTH, "roi_size": 7, "scale_factor": 2}
_GLOBAL_CONTEXT = {"_target_": "cascades.modeling.GlobalContextHead",
                   "input_shape": {"p6": {"channels": _WIDTH, "stride": 64}}, "in_feature": "p6",
                   "num_classes": _BALLOON_CLASSES, "conv_dim": _WIDTH, "num_convs": 4, "loss_weight": 3.0}
# Every row has SCNet's residual semantic branch, as configs/COCO-InstanceSegmentation/scnet_ablation_*
# do: the released code has no ablation configs, so the baseline takes the full SCNet's branch and each
# row differs from it only in the component it names.
_RESIDUAL_SEMANTIC = override("model.roi_heads.semantic_head.residual", True)
SCNET_ABLATION = Section(
    "SCNet ablation (paper Table 2) on balloon_val, 3 seeds",
    baseline="ablation-baseline",
    rows=(
        Row("ablation-baseline", _small("Balloon", "cascade_mask_rcnn_semantic"), (_RESIDUAL_SEMANTIC,),
            label="baseline (Cascade Mask R-CNN + semantic)"),
        Row("ablation-sc", _small("Balloon", "scnet"),
            (override("model.roi_heads.feature_relays", None),
             override("model.roi_heads.global_context_head", None)), label="+SC"),
        Row("ablation-fr", _small("Balloon", "cascade_mask_rcnn_semantic"),
            (_RESIDUAL_SEMANTIC, override("model.roi_heads.feature_relays", [_FEATURE_RELAY] * 3, add=True)),
            label="+FR"),
        Row("ablation-gc", _small("Balloon", "cascade_mask_rcnn_semantic"),
            (_RESIDUAL_SEMANTIC, override("model.roi_heads.global_context_head", _GLOBAL_CONTEXT, add=True)),
            label="+GC"),
        Row("ablation-all", _small("Balloon", "scnet"), label="SC + FR + GC (SCNet)"),
    ),
)

# MNC Table 1's ordering: 5 stages end to end > 3 stages end to end > 5 stages with the boxes detached.
# Every row is tested with the 5-stage inference, as the paper's caption says of all its rows.
MNC_TABLE1 = Section(
    "MNC ablation (paper Table 1) on balloon_val, 3 seeds",
    baseline="mnc-5stage-e2e",
    rows=(
        Row("mnc-5stage-e2e", _small("Balloon", "mnc"), label="5-stage, end to end"),
        Row("mnc-3stage-e2e", _small("Balloon", "mnc"),
            ("model.roi_heads.num_stages=3",), label="3-stage, end to end"),
        Row("mnc-5stage-detached", _small("Balloon", "mnc"), ("model.roi_heads.end_to_end=False",),
            label="5-stage, boxes detached"),
    ),
)

_MODELS = [("mask_rcnn", "detectron2 Mask R-CNN"), ("cascade_mask_rcnn", "detectron2 Cascade Mask R-CNN"),
           ("cascade_mask_rcnn_semantic", "Cascade Mask R-CNN + semantic"), ("htc", "HTC"), ("scnet", "SCNet"),
           ("mnc", "MNC")]

STUDIES = {
    s.name: s
    for s in [
        Study(
            "issue10",
            description="Every small config trained for its whole schedule, evaluated on held-out images.",
            sections=(
                Section("balloon_val (13 photos), 3 seeds", baseline="balloon-mask_rcnn",
                        rows=_balloon_rows(_MODELS)),
                Section("coco128_seg_val, 1 seed", rows=tuple(
                    Row("coco128-" + m, _small("COCO128", m), seeds=(1,), label=label)
                    for m, label in _MODELS[2:])),
                Section("cascades_shapes_val (generated shapes), 1 seed", rows=tuple(
                    Row("shapes-" + m, f"configs/DefaultShapes/{m}_R_18_FPN_demo.py", seeds=(1,),
                        label=label + (" (make demo)" if m == "scnet" else ""))
                    for m, label in _MODELS[1:])),
            ),
        ),
        Study(
            "issue12",
            description="The papers' central ablations at a small scale: MNC Table 1, SCNet Table 2.",
            sections=(MNC_TABLE1, SCNET_ABLATION),
        ),
    ]
}
