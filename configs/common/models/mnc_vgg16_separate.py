# MNC's Table 1 (a) and (b) baselines (Sec. 7.1): one VGG-16 per stage network (RPN, masks, categories),
# the 3-stage cascade (tested with 5 stages, as every row), trained step by step: each step trains one
# network on the outputs of the others, whose weights stay fixed (MNC.freeze); boxes are detached
# between the networks. (a): three separate networks, each from ImageNet. (b): then the category
# network's convolutional layers are shared by all three and kept fixed, and each network's own layers
# are trained again, step by step. configs/VOC-SBD/mnc_VGG16_table1{a,b}_step{1,2,3}_*.py.
from detectron2.config import LazyCall as L

from cascades.modeling.mnc import VGG16, StagewiseBackbone

from .mnc_vgg16 import model

NETWORKS = ("rpn", "mask", "category")
# What each stage network trains besides its own convolutional layers (backbone.nets.<network>).
OWN_LAYERS = {
    "rpn": ["proposal_generator"],
    "mask": ["roi_heads.mask_head"],
    "category": ["roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.box_level_classifier"],
}

model.backbone = L(StagewiseBackbone)(
    shared=None, **{name: L(VGG16)(freeze_at=2, out_features=["conv5"]) for name in NETWORKS}
)
model.proposal_generator.in_features = ["rpn_conv5"]
model.roi_heads.in_features = ["mask_conv5"]
model.roi_heads.box_in_features = ["category_conv5"]
model.roi_heads.num_stages = 3
model.roi_heads.end_to_end = False


def table1_step(model, train, ablation: str, step: int):
    """Sets up step ``step`` (1: RPN, 2: masks, 3: categories) of Table 1 ``ablation`` ("a" or "b"):
    the networks it does not train frozen, its output folder, and the previous step's final weights as
    its start ((a)'s first step starts from ImageNet weights, (b)'s from (a)'s last step)."""
    network = NETWORKS[step - 1]
    shared = ablation == "b"
    frozen = [m for n in NETWORKS if n != network for m in OWN_LAYERS[n]]
    if shared:
        model.backbone.shared = "category"
        frozen.append("backbone")
    else:
        frozen += [f"backbone.nets.{n}" for n in NETWORKS if n != network]
    model.freeze = frozen
    name = "voc_sbd_mnc_VGG16_table1{}_step{}_{}"
    train.output_dir = "./output/" + name.format(ablation, step, network)
    previous = (ablation, step - 1) if step > 1 else (("a", 3) if shared else None)
    # The converted ImageNet VGG-16 for each network in (a)'s first step; see docs/MODEL_ZOO.md, "Checkpoints".
    train.init_checkpoint = "" if previous is None else (
        "./output/" + name.format(previous[0], previous[1], NETWORKS[previous[1] - 1]) + "/model_final.pth")
    return model
