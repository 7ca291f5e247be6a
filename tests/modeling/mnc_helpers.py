"""What the MNC tests share: a tiny MNC built from the Balloon small config, hand-built GT instances and
batches, and controlled ROI heads (one feature map, hand-set weights) for exact expected values."""
import copy
import os

import torch

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from cascades.layers import RoIWarpPooler
from cascades.modeling.mnc import MNCBoxHead, MNCMaskHead, MNCROIHeads, add_mnc_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 128
STAGE_LOSSES = ["loss_mask_stage{}", "loss_cls_stage{}", "loss_cls_box_level_stage{}", "loss_box_reg_stage{}"]

# The MNC options the tests pin one at a time: the paper's behaviour unless a test sets another.
PAPER_OPTIONS = dict(box_grad_clip=None, box_grad_scale=1.0, sampling="detectron2", vote_mode="paper",
                     positive_fraction=0.25, mask_threshold=0.4,
                     proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False))


def tiny_fpn_config(num_classes=2, rpn=None, **roi_heads):
    """The Balloon small config shrunk further (FPN 32 channels, fc 64, few proposals), with the paper's
    MNC options (PAPER_OPTIONS) overridden by ``roi_heads`` (and ``rpn`` for the proposal generator)."""
    cfg = LazyConfig.load(os.path.join(REPO, "configs/Balloon/mnc_R_18_FPN_small.py"))
    model = cfg.model
    model.backbone.out_channels = 32
    model.proposal_generator.head.in_channels = 32
    model.proposal_generator.pre_nms_topk = (200, 200)
    model.proposal_generator.post_nms_topk = (40, 40)
    model.proposal_generator.min_box_size = 0
    model.proposal_generator.box_grad_clip = None
    model.proposal_generator.update(rpn or {})
    heads = model.roi_heads
    heads.mask_head.input_shape.channels = 32
    heads.box_head.input_shape.channels = 32
    heads.box_head.fc_dims = [64, 64]
    heads.box_predictor.input_shape.channels = 128
    heads.mask_head.fc_dim = 64
    heads.batch_size_per_image = 32
    heads.num_classes = num_classes
    heads.update(PAPER_OPTIONS)
    heads.update(roi_heads)
    return model


def build(num_classes=2, seed=0, rpn=None, **roi_heads):
    torch.manual_seed(seed)
    return instantiate(tiny_fpn_config(num_classes, rpn, **roi_heads))


def make_target(boxes, classes, size=SIZE):
    """GT instances whose masks are the left halves of their (clipped, rounded) boxes."""
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for k, (x0, y0, x1, y1) in enumerate(boxes.clamp(0, size).round().long().tolist()):
        masks[k, y0:y1, x0 : (x0 + x1 + 1) // 2] = True
    return Instances((size, size), gt_boxes=Boxes(boxes), gt_classes=torch.tensor(classes, dtype=torch.int64),
                     gt_masks=BitMasks(masks))


def make_batch(targets, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"image": (torch.rand(3, SIZE, SIZE, generator=g) * 255), "instances": t, "height": SIZE, "width": SIZE}
        for t in targets
    ]


def default_batch():
    return make_batch([make_target([[10, 20, 70, 90], [60, 50, 120, 110]], [0, 1]),
                       make_target([[30, 30, 100, 80]], [1])])


def train_losses(model, batch):
    model.train()
    with EventStorage():
        return model(batch)


def proposals(boxes, size=SIZE, requires_grad=False):
    """One image's proposals (XYXY list), optionally a leaf that records its gradient."""
    t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).requires_grad_(requires_grad)
    return Instances((size, size), proposal_boxes=Boxes(t), objectness_logits=torch.zeros(len(t)))


def controlled_heads(num_classes=2, channels=1, mask_size=2, fc_dim=4, box_feature_pool=2, **options):
    """Small MNCROIHeads on one stride-1 map: a 4 x 4 warp max-pooled to 2 x 2 for the mask head, and
    by ``box_feature_pool`` again for the box head, masks of ``mask_size``; the paper's options unless
    ``options`` say otherwise."""
    torch.manual_seed(0)
    roi = ShapeSpec(channels=channels, height=2, width=2)
    side = 2 // box_feature_pool
    box_head = MNCBoxHead(input_shape=ShapeSpec(channels=channels, height=side, width=side), fc_dims=[fc_dim])
    kwargs = dict(
        num_classes=num_classes,
        batch_size_per_image=64,
        positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        proposal_append_gt=False,
        in_features=["f"],
        pooler=RoIWarpPooler(4, (1.0,), pool_size=2),
        mask_head=MNCMaskHead(input_shape=roi, fc_dim=fc_dim, mask_size=mask_size),
        box_head=box_head,
        box_predictor=FastRCNNOutputLayers(box_head.output_shape, box2box_transform=Box2BoxTransform((10, 10, 5, 5)),
                                           num_classes=num_classes, test_score_thresh=0.0, test_nms_thresh=0.3,
                                           test_topk_per_image=100),
        box_feature_pool=box_feature_pool,
    )
    kwargs.update(options)
    return MNCROIHeads(**kwargs)


def yacs_mnc_config(fc_dim=16, **mnc):
    """A yacs config of MNC on VGG-16 (add_mnc_config's keys), MODEL.MNC keys set from ``mnc``."""
    cfg = add_mnc_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "MNC"
    cfg.MODEL.BACKBONE.NAME = "build_vgg16_backbone"
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "MNCRPN"
    cfg.MODEL.RPN.IN_FEATURES = ["conv5"]
    cfg.MODEL.ROI_HEADS.NAME = "MNCROIHeads"
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["conv5"]
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = fc_dim
    for key, value in mnc.items():
        cfg.MODEL.MNC[key] = value
    return cfg


def train_with_config(cfg, model, dataset_dicts, iters: int, log_period: int = 0):
    """Trains ``model`` as the LazyConfig ``cfg`` says (its optimizer, its LR schedule run over ``iters``
    iterations, its train mapper and batch size) on ``dataset_dicts`` cycled in order, without a data
    loader; returns the last losses. A non-finite loss raises FloatingPointError naming the iteration."""
    mapper = instantiate(cfg.dataloader.train.mapper)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    cfg.lr_multiplier.max_iter = iters
    schedule = instantiate(cfg.lr_multiplier)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    batch_size = cfg.dataloader.train.total_batch_size
    model.train()
    losses = {}
    with EventStorage() as storage:
        for it in range(iters):
            storage.iter = it
            for group, lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = lr * schedule(it / iters)
            start = it * batch_size
            batch = [mapper(copy.deepcopy(dataset_dicts[(start + k) % len(dataset_dicts)])) for k in range(batch_size)]
            losses = model(batch)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"loss diverged at iteration {it}: {losses}")
            if log_period and it % log_period == 0:
                print(it, f"{total.item():.3f}", {k: round(v.item(), 3) for k, v in losses.items()}, flush=True)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
    return {k: v.item() for k, v in losses.items()}
