"""MNC's meta-architecture and its RPN (stage 1), whose proposals keep their graph for end-to-end training."""
from typing import Dict, List, Optional, Sequence

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, PROPOSAL_GENERATOR_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator import RPN
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.structures import BitMasks, Boxes, Instances

from .mnc_box_gradient import boxes_inside_image, clip_delta_gradient, delta_gradient_threshold
from .mnc_heads import MNCBoxHead, MNCMaskHead
from .mnc_mask_voting import VotedMasks, nms_and_mask_voting
from .mnc_roi_heads import MNCROIHeads, check_box_gradient_option
from .mnc_separate import StagewiseBackbone
from .mnc_vgg import VGG16

__all__ = [
    "MNC",
    "MNCBoxHead",
    "MNCMaskHead",
    "MNCROIHeads",
    "MNCRPN",
    "StagewiseBackbone",
    "VGG16",
    "VotedMasks",
    "add_mnc_config",
    "nms_and_mask_voting",
]


def add_mnc_config(cfg):
    """yacs keys behind the MNC modules' ``from_config`` (our own configs are LazyConfig files).
    Use with META_ARCHITECTURE "MNC", PROPOSAL_GENERATOR.NAME "MNCRPN", ROI_HEADS.NAME "MNCROIHeads".
    Also sets detectron2's shared keys to the paper's values: 300 proposals (train and test), 64 RoIs
    per image, per-class NMS at 0.3, two fc 4096 per stage-3 pathway; and where the paper is silent, to
    the released code's: Fast R-CNN's smooth L1 (beta 1 in the ROI heads, 1/9 in the RPN). The MNC keys'
    defaults are the paper's (no box-gradient clip, detectron2's sampling, paper voting); see
    configs/common/models/mnc.py for the released training set-up."""
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 300
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 300
    cfg.MODEL.RPN.SMOOTH_L1_BETA = 1.0 / 9
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.3
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 4096
    cfg.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 1.0
    cfg.MODEL.MNC = CN()
    cfg.MODEL.MNC.NUM_STAGES = 5
    cfg.MODEL.MNC.TEST_NUM_STAGES = 5
    cfg.MODEL.MNC.END_TO_END = True
    cfg.MODEL.MNC.BOX_GRAD_SCALE = 1.0
    cfg.MODEL.MNC.BOX_GRAD_CLIP = None  # the released code: 1.0 / 512 (MNCRPN and MNCROIHeads)
    cfg.MODEL.MNC.SAMPLING = "detectron2"  # or "released"
    cfg.MODEL.MNC.VOTE_MODE = "paper"  # or "released"
    cfg.MODEL.MNC.MASKING_GRAD = "all"  # or "mask_level_positives" (the released code)
    cfg.MODEL.MNC.FREEZE = []  # submodules not trained (Table 1's step-by-step training)
    cfg.MODEL.MNC.BOX_IN_FEATURES = []  # stage 3's features when not ROI_HEADS.IN_FEATURES (separate networks)
    cfg.MODEL.MNC.WARP_SIZE = 28
    cfg.MODEL.MNC.WARP_POOL_SIZE = 2
    cfg.MODEL.MNC.BOX_FEATURE_POOL = 2
    cfg.MODEL.MNC.MASK_SIZE = 28
    cfg.MODEL.MNC.MASK_FC_DIM = 256
    cfg.MODEL.MNC.MASK_LOSS_WEIGHT = 1.0
    cfg.MODEL.MNC.MASK_IOU_THRESH = 0.5
    cfg.MODEL.MNC.VOTE_IOU_THRESH = 0.5
    cfg.MODEL.MNC.MASK_THRESHOLD = 0.4
    cfg.MODEL.VGG = CN()
    cfg.MODEL.VGG.OUT_FEATURES = ["conv5"]
    return cfg


@PROPOSAL_GENERATOR_REGISTRY.register()
class MNCRPN(RPN):
    """detectron2's RPN whose proposal boxes are functions of the predicted anchor deltas: detectron2
    decodes them under ``no_grad`` ("proposals are treated as fixed"), MNC back-propagates the later
    stages' losses into them (Eq. 9). NMS and top-k only select boxes, as in the paper."""

    @configurable
    def __init__(self, *, box_grad_clip: Optional[float] = None, **kwargs):
        """
        Args:
            box_grad_clip: the released code's proposal-layer backward (None: the paper's full
                gradient): the gradient that the proposals pass into the anchor deltas is clipped to
                +-``box_grad_clip`` (1/512 there) per delta, after the width/height scaling, and is 0
                for a proposal that the image border cuts or whose anchor crosses it. The RPN's own
                regression loss reaches the deltas unclipped. See :mod:`cascades.modeling.mnc_box_gradient`.
            kwargs: detectron2's RPN arguments.
        """
        super().__init__(**kwargs)
        check_box_gradient_option("MNCRPN", "box_grad_clip", box_grad_clip, allow_none=True)
        self.box_grad_clip = box_grad_clip

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["box_grad_clip"] = cfg.MODEL.MNC.BOX_GRAD_CLIP
        return ret

    def _released_box_gradient(self, anchors: List[Boxes], pred_anchor_deltas: List[torch.Tensor], image_sizes):
        """The anchor deltas with the released proposal layer's backward (see ``box_grad_clip``)."""
        threshold = delta_gradient_threshold(
            self.box_grad_clip, len(image_sizes), self.box2box_transform.weights, pred_anchor_deltas[0].device
        )
        with torch.no_grad():
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)
        out = []
        for anchors_i, deltas_i, proposals_i in zip(anchors, pred_anchor_deltas, proposals):
            keep = torch.stack(
                [boxes_inside_image(anchors_i.tensor, s) & boxes_inside_image(p, s) for p, s in zip(proposals_i, image_sizes)]
            )
            out.append(clip_delta_gradient(deltas_i, keep, threshold))
        return out

    def predict_proposals(self, anchors, pred_objectness_logits, pred_anchor_deltas, image_sizes):
        if self.training and self.box_grad_clip is not None:
            pred_anchor_deltas = self._released_box_gradient(anchors, pred_anchor_deltas, image_sizes)
        pred_proposals = self._decode_proposals(anchors, pred_anchor_deltas)
        return find_top_rpn_proposals(
            pred_proposals,
            pred_objectness_logits,
            image_sizes,
            self.nms_thresh,
            self.pre_nms_topk[self.training],
            self.post_nms_topk[self.training],
            self.min_box_size,
            self.training,
        )


@META_ARCH_REGISTRY.register()
class MNC(GeneralizedRCNN):
    """
    Multi-task Network Cascade: backbone, stage-1 RPN (:class:`MNCRPN`) and :class:`MNCROIHeads`
    (stages 2-5). Training is GeneralizedRCNN's. At inference the heads return voted soft masks in
    their own frames (``Instances.pred_voted_masks``, a :class:`VotedMasks`); with ``do_postprocess``
    (the default) this pastes them into the output image and binarizes them at ``mask_threshold`` (0.4
    in the released code), giving ``pred_masks`` (N x H x W bool) as detectron2's models do. With the
    heads' ``vote_mode="released"``, ``pred_boxes`` then become the tight boxes of those masks (the
    paper's "mask-tight boxes"; an empty mask gives an empty box).
    """

    @configurable
    def __init__(self, *, mask_threshold: float = 0.4, freeze: Sequence[str] = (), **kwargs):
        """
        Args:
            mask_threshold: binarizes the pasted masks.
            freeze: submodules (by name, e.g. "backbone", "roi_heads.mask_head") whose parameters are not
                trained: the step-by-step training of Table 1 (a) and (b) trains one stage network at a
                time (see :mod:`cascades.modeling.mnc_separate`).
            kwargs: GeneralizedRCNN's arguments.
        """
        super().__init__(**kwargs)
        if not 0.0 <= mask_threshold <= 1.0:
            raise ValueError(f"MNC: mask_threshold must be in [0, 1], got {mask_threshold}")
        self.mask_threshold = mask_threshold
        modules = dict(self.named_modules())
        unknown = [name for name in freeze if name not in modules or not name]
        if unknown:
            raise ValueError(f"MNC: freeze names no submodule: {unknown} (e.g. 'backbone', 'proposal_generator', "
                             "'roi_heads.mask_head')")
        for name in freeze:
            modules[name].requires_grad_(False)
        self.freeze = list(freeze)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["mask_threshold"] = cfg.MODEL.MNC.MASK_THRESHOLD
        ret["freeze"] = cfg.MODEL.MNC.FREEZE
        return ret

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        if self.training:
            # A GT box of zero width or height has no box-regression target (log of its size) and
            # no mask: drop it, as detectron2's mapper does with filter_empty_instances.
            batched_inputs = [
                {**x, "instances": x["instances"][x["instances"].gt_boxes.nonempty()]} if "instances" in x else x
                for x in batched_inputs
            ]
        return super().forward(batched_inputs)

    def inference(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        detected_instances: Optional[List[Instances]] = None,
        do_postprocess: bool = True,
    ):
        if detected_instances is not None:
            raise ValueError("MNC: detected_instances is not supported: masks come from the cascade, not from boxes")
        results = super().inference(batched_inputs, do_postprocess=False)
        if not do_postprocess:
            return results
        return [
            {"instances": self.postprocess(result, inputs.get("height", result.image_size[0]),
                                           inputs.get("width", result.image_size[1]))}
            for result, inputs in zip(results, batched_inputs)
        ]

    def postprocess(self, result: Instances, height: int, width: int) -> Instances:
        """Detections at the network's input size -> at ``height`` x ``width``: boxes rescaled
        (``detector_postprocess``), the voted masks pasted and binarized at ``mask_threshold``, and with
        ``vote_mode="released"`` the voted masks' tight boxes as the output boxes."""
        r = detector_postprocess(result, height, width)
        # detector_postprocess rescaled pred_boxes only; the mask frames follow the same scale.
        voted = r.pred_voted_masks
        voted.scale(width / result.image_size[1], height / result.image_size[0])
        r.remove("pred_voted_masks")
        r.pred_masks = voted.to_bitmasks(height, width, self.mask_threshold).tensor
        if self.roi_heads.vote_mode == "released":
            r.pred_boxes = BitMasks(r.pred_masks).get_bounding_boxes()
        return r
