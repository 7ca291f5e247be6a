"""Fixtures for the SCNet / HTC tests: small real models, a few real images, a training loop."""
import copy
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import roi_align

import detectron2.data.transforms as T
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.utils.events import EventStorage

from cascades.data.storage import missing_message
from cascades.engine.optim import ClippedSGD

from balloon_small_configs import load_balloon_small


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, two threads per process oversubscribe the cores
    and run ~10x slower than one (measured here: 10.3 vs 0.9 s per small SCNet step)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_small_config(method: str, short_side: int = 256):
    cfg = load_balloon_small(method)
    cfg.dataloader.train.mapper.augmentations[0].short_edge_length = short_side
    cfg.dataloader.test.mapper.augmentations[0].short_edge_length = short_side
    return cfg


@pytest.fixture
def small_config():
    """``small_config(method, short_side)``: the Balloon small LazyConfig of scnet/htc/cascade_semantic."""
    return load_small_config


@pytest.fixture(scope="session")
def balloon_subset():
    """``balloon_subset(n)``: the name of a registered dataset of the first n balloon train images."""
    import cascades.data  # noqa: F401  registers balloon_*

    if "balloon_train" not in DatasetCatalog.list():
        pytest.skip(missing_message("balloon"))

    def make(n: int) -> str:
        name = f"balloon_train_first{n}"
        if name not in DatasetCatalog.list():
            DatasetCatalog.get("balloon_train")  # loading the json sets thing_classes
            DatasetCatalog.register(name, lambda: DatasetCatalog.get("balloon_train")[:n])
            MetadataCatalog.get(name).set(
                thing_classes=MetadataCatalog.get("balloon_train").thing_classes,
                evaluator_type="coco",
            )
        return name

    return make


def train_model(
    model, mapper, dataset_dicts, iters, lr=0.02, warmup=50, batch_size=2, seed=0, log_period=0,
    max_grad_norm=None, steps=(),
):
    """SGD with linear warm-up on ``dataset_dicts`` cycled in order; returns the last losses.
    ``max_grad_norm``: clip the gradients' total norm (ClippedSGD); ``steps``: fractions of ``iters``
    after which the lr is multiplied by 0.1."""
    torch.manual_seed(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if max_grad_norm is None:
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    else:
        optimizer = ClippedSGD(params, lr=lr, momentum=0.9, weight_decay=1e-4, max_grad_norm=max_grad_norm)
    losses = {}
    with EventStorage() as storage:
        for it in range(iters):
            storage.iter = it
            decay = 0.1 ** sum(it >= int(iters * s) for s in steps)
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (it + 1) / warmup) * decay
            start = it * batch_size
            batch = [
                mapper(copy.deepcopy(dataset_dicts[(start + k) % len(dataset_dicts)]))
                for k in range(batch_size)
            ]
            losses = model(batch)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise FloatingPointError(f"loss diverged at iteration {it}: {losses}")
            if log_period and it % log_period == 0:
                print(it, f"{total.item():.3f}", {k: round(v.item(), 3) for k, v in losses.items()})
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
    return {k: v.item() for k, v in losses.items()}


def evaluate_model(model, dataset_name, short_side, output_dir):
    """COCO box and mask AP of ``model`` on a registered dataset (detectron2's COCOEvaluator)."""
    from detectron2.data import build_detection_test_loader

    mapper = DatasetMapper(
        is_train=False, augmentations=[T.ResizeShortestEdge(short_side, 448)], image_format="BGR"
    )
    loader = build_detection_test_loader(
        DatasetCatalog.get(dataset_name), mapper=mapper, num_workers=0
    )
    evaluator = COCOEvaluator(dataset_name, tasks=("bbox", "segm"), output_dir=str(output_dir))
    model.eval()
    return inference_on_dataset(model, loader, evaluator)


@pytest.fixture
def trainer():
    return train_model


@pytest.fixture
def evaluator():
    return evaluate_model


def synthetic_batch(num_images=2, size=128, channels=64, num_classes=1, seed=0):
    """Random FPN features with real-looking targets and proposals around them (ROI-heads tests)."""
    from detectron2.structures import BitMasks, Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    features = {
        f"p{k}": torch.randn(num_images, channels, size // 2**k, size // 2**k, generator=g)
        for k in range(2, 7)
    }
    targets, proposals = [], []
    for i in range(num_images):
        xy = torch.rand(3, 2, generator=g) * size * 0.5
        wh = 16 + torch.rand(3, 2, generator=g) * size * 0.4
        boxes = torch.cat([xy, (xy + wh).clamp(max=size - 1)], dim=1)
        masks = torch.zeros(3, size, size, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
            masks[k, y0 : y1 + 1, x0 : (x0 + x1) // 2 + 1] = True  # left half of the box
        gt = Instances((size, size))
        gt.gt_boxes = Boxes(boxes)
        gt.gt_classes = torch.randint(0, num_classes, (3,), generator=g)
        gt.gt_masks = BitMasks(masks)
        targets.append(gt)
        jitter = boxes.repeat(10, 1) + torch.randn(30, 4, generator=g) * 6
        random_boxes = torch.rand(34, 4, generator=g) * size
        corners = (random_boxes[:, :2], random_boxes[:, 2:])
        random_boxes = torch.cat([torch.minimum(*corners), torch.maximum(*corners)], dim=1)
        prop = Instances((size, size))
        prop.proposal_boxes = Boxes(torch.cat([jitter, random_boxes]).clamp(0, size - 1))
        prop.objectness_logits = torch.randn(64, generator=g)
        proposals.append(prop)
    return features, proposals, targets


@pytest.fixture
def batch_maker():
    """:func:`synthetic_batch`."""
    return synthetic_batch


@pytest.fixture
def roi_heads_and_batch():
    """``roi_heads_and_batch(method, **overrides)``: small ROI heads (train mode) and a batch."""
    from detectron2.config import instantiate

    def make(method, num_classes=1, **overrides):
        cfg = load_small_config(method)
        cfg.model.roi_heads.num_classes = num_classes
        cfg.model.roi_heads.update(overrides)
        torch.manual_seed(0)
        heads = instantiate(cfg.model.roi_heads)
        heads.train()
        return heads, synthetic_batch(num_classes=num_classes)

    return make


@pytest.fixture
def spy(monkeypatch):
    """``spy(obj, name)``: wraps the method ``obj.name`` (e.g. a module's ``forward``) for this test;
    returns the list of its calls, each with ``args``, ``kwargs`` and ``out``."""

    def install(obj, name):
        calls = []
        real = getattr(obj, name)

        def wrapper(*args, **kwargs):
            out = real(*args, **kwargs)
            calls.append(SimpleNamespace(args=args, kwargs=kwargs, out=out))
            return out

        monkeypatch.setattr(obj, name, wrapper)
        return calls

    return install


def semantic_roi_features(heads, embedding, boxes, size, semantic_box_pool):
    """The semantic embedding RoI-aligned at stride 8 for RoI features of ``size`` x ``size``: as the
    released code pools it for the box branch (``semantic_box_pool="from_mask_resolution"``), at the
    mask resolution and then averaged over blocks down to ``size``; else at ``size`` directly."""
    from detectron2.modeling.poolers import convert_boxes_to_pooler_format

    def pool(resolution):
        rois = convert_boxes_to_pooler_format(boxes)
        return roi_align(embedding, rois, resolution, spatial_scale=1 / 8, sampling_ratio=0, aligned=True)

    mask_size = heads.mask_pooler.output_size[0]
    if semantic_box_pool == "direct" or mask_size == size:
        return pool((size, size))
    x = pool((mask_size, mask_size))
    block = mask_size // size
    return x.reshape(*x.shape[:2], size, block, size, block).mean(dim=(3, 5))


def roi_features_with_context(heads, features, boxes, pooler, semantic_box_pool=None):
    """RoI features as the HTC/SCNet papers fuse them, computed apart from the heads' own code: the
    pooled FPN features, plus the semantic embedding RoI-aligned at stride 8 (for the box branch as
    ``semantic_box_pool`` says, by default the heads' setting), plus the image's global-context vector
    (where the heads have those branches)."""
    from detectron2.modeling.poolers import convert_boxes_to_pooler_format

    x = pooler([features[f] for f in heads.box_in_features], boxes)
    rois = convert_boxes_to_pooler_format(boxes)
    if heads.semantic_head is not None:
        _, embedding = heads.semantic_head(features)
        box_pool = semantic_box_pool or heads.semantic_box_pool
        x = x + semantic_roi_features(heads, embedding, boxes, x.shape[-1], box_pool)
    if heads.global_context_head is not None:
        _, vectors = heads.global_context_head(features)
        x = x + vectors[rois[:, 0].long()][:, :, None, None]
    return x


@pytest.fixture
def with_context():
    """``with_context(heads, features, boxes, pooler, semantic_box_pool=None)``:
    :func:`roi_features_with_context`."""
    return roi_features_with_context


def matched_targets(targets, proposals):
    """Each proposal's GT, the one it overlaps most (the matchers' choice), per image: its row in the
    image's targets."""
    from detectron2.structures import pairwise_iou

    return [pairwise_iou(t.gt_boxes, p.proposal_boxes).argmax(dim=0) for t, p in zip(targets, proposals)]


@pytest.fixture
def matched():
    """``matched(targets, proposals)``: :func:`matched_targets`."""
    return matched_targets
