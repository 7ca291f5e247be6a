"""Test-time augmentation with masks (cascades.modeling.test_time_augmentation): identity TTA is plain
inference, flipping commutes with it, every model family runs it, bad settings are refused."""

import cv2
import numpy as np
import pytest
import torch

import detectron2.data.transforms as T
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.modeling import GeneralizedRCNN
from detectron2.structures import Boxes, pairwise_iou

from cascades.data.default_shapes import register_default_shapes  # noqa: F401  registers the shapes
from cascades.modeling import test_time_augmentation
from cascades.modeling.test_time_augmentation import (CascadeWithPerRoITTA, MNCWithTTA, RCNNWithTTA, check_tta_settings,
                                                      with_tta)

from balloon_small_configs import load_balloon_small

CASCADES = ("scnet", "htc", "cascade_semantic")
TEST_SIZE = 160  # short side of the test images, as a test mapper resizes them


def random_model(name):
    """A small model of the family with random weights, in eval mode. Its random features are large: the
    class scores are scaled down, or most saturate at 1.0 and their ties leave the NMS order to chance;
    the masks are made confident (scaled up), so that binarized masks do not hinge on float rounding."""
    cfg = load_balloon_small(name)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        for module_name, module in model.roi_heads.named_modules():
            if module_name.endswith("cls_score"):
                module.weight.mul_(0.1)
            if module_name.startswith("mask_head") and module_name.endswith("predictor"):
                module.weight.mul_(50)
    return model


def photo(resized=True):
    """A non-square image with shapes, as the test mapper gives it (resized to TEST_SIZE), and its
    original size; or (``resized=False``) at TEST_SIZE already."""
    image = cv2.imread(DatasetCatalog.get("cascades_shapes_val")[3]["file_name"])[:, :200]
    resized_image = T.ResizeShortestEdge(TEST_SIZE, 448).get_transform(image).apply_image(image)
    height, width = (image if resized else resized_image).shape[:2]
    tensor = torch.as_tensor(np.ascontiguousarray(resized_image.transpose(2, 0, 1)))
    return {"image": tensor, "height": height, "width": width}


def mirrored(inputs):
    return {**inputs, "image": inputs["image"].flip(-1)}


def run(model, inputs):
    with torch.no_grad():
        return model([inputs])[0]["instances"]


def assert_same_instances(a, b, box_atol=1e-3):
    assert len(a) == len(b) > 0
    assert torch.equal(a.pred_classes, b.pred_classes)
    torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=0, atol=box_atol)
    # A pixel on a mask's border may fall either side of the threshold with boxes equal to float error.
    assert a.pred_masks.shape == b.pred_masks.shape
    assert (a.pred_masks != b.pred_masks).float().mean() < 1e-3


@pytest.mark.parametrize("name", [*CASCADES, "mnc", "mask_rcnn"])
def test_identity_tta_is_plain_inference(name):
    """One augmentation, the test size itself, no flip: detectron2's merge gives the plain detections;
    MNC's merge (its candidates through NMS and mask voting) the same detections, boxes and classes."""
    model, inputs = random_model(name), photo()
    tta = with_tta(model, min_sizes=[TEST_SIZE], max_size=448, flip=False)
    assert type(tta) is (MNCWithTTA if name == "mnc" else RCNNWithTTA)
    assert_same_instances(run(model, inputs), run(tta, inputs))


def test_identity_mmdetection2_merge_is_plain_inference():
    """mmdetection 2's merge with one augmentation is plain inference, but for one more NMS of the
    proposals, across the FPN levels (its merge_aug_proposals), which removes none here (checked). At the
    test size itself, so that the proposals' and detections' NMS run on the same coordinates in both."""
    model, inputs = random_model("scnet"), photo(resized=False)
    tta = with_tta(model, min_sizes=[TEST_SIZE], max_size=448, flip=False, merge="mmdetection2")
    assert type(tta) is CascadeWithPerRoITTA
    rpn = model.proposal_generator
    with torch.no_grad():
        images = model.preprocess_image([inputs])
        [proposals], _ = rpn(images, model.backbone(images.tensor), None)
    boxes, logits = tta._merge_proposals([proposals], [T.NoOpTransform()])
    assert torch.equal(boxes, proposals.proposal_boxes.tensor) and torch.equal(logits, proposals.objectness_logits)
    assert_same_instances(run(model, inputs), run(tta, inputs))


@pytest.mark.parametrize("name, merge", [*((n, m) for n in CASCADES for m in ("detectron2", "mmdetection2")),
                                         ("mnc", "detectron2")])
def test_flip_tta_commutes_with_mirroring(name, merge):
    """Flip-TTA of the mirrored image is the mirror image of the original's flip-TTA result."""
    model, inputs = random_model(name), photo()
    tta = with_tta(model, min_sizes=[TEST_SIZE], max_size=448, flip=True, merge=merge)
    result, of_mirror = run(tta, inputs), run(tta, mirrored(inputs))
    boxes = result.pred_boxes.tensor
    width = inputs["width"]
    mirror_boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    result.pred_boxes.tensor = mirror_boxes
    result.pred_masks = result.pred_masks.flip(-1)
    assert_same_instances(result, of_mirror)


@pytest.mark.parametrize("name", [*CASCADES, "mnc", "mask_rcnn"])
def test_flip_and_two_scales_run(name):
    model, inputs = random_model(name), photo()
    plain = run(model, inputs)
    tta = with_tta(model, min_sizes=[128, 192], max_size=448, flip=True)
    instances = run(tta, inputs)
    assert len(instances) > 0
    assert instances.pred_masks.shape[1:] == (inputs["height"], inputs["width"]) == plain.pred_masks.shape[1:]
    assert instances.pred_masks.dtype == torch.bool
    boxes = instances.pred_boxes.tensor
    assert (boxes[:, 2:] <= torch.tensor([inputs["width"], inputs["height"]])).all() and (boxes >= 0).all()
    # Not the plain result: the other scales and the flip took part.
    assert len(instances) != len(plain) or not torch.equal(instances.pred_boxes.tensor, plain.pred_boxes.tensor)


def max_overlap(boxes, classes=None):
    """The largest IoU between two different boxes (of the same class, when classes are given)."""
    iou = pairwise_iou(Boxes(boxes), Boxes(boxes)).fill_diagonal_(0)
    if classes is not None:
        iou = iou * (classes[:, None] == classes[None])
    return iou.max().item()


def test_detectron2_merge_is_one_nms_with_the_models_settings():
    """The union of the augmentations' detections goes through one per-class NMS at the last stage's test
    threshold, keeping its top-k (settings read from the model, not from a yacs config)."""
    model, inputs = random_model("cascade_semantic"), photo()
    predictor = model.roi_heads.box_predictor[-1]
    predictor.test_topk_per_image = 8
    instances = run(with_tta(model, min_sizes=[128, TEST_SIZE], max_size=448, flip=True), inputs)
    assert len(instances) == 8
    assert max_overlap(instances.pred_boxes.tensor, instances.pred_classes) <= predictor.test_nms_thresh


def test_mnc_merges_the_candidates_of_every_augmentation_in_one_vote(spy):
    """MNC's merge: the candidates of both pairs (stages 3 and 5) of every augmentation, in the original
    image, go through one NMS and mask voting."""
    model, inputs = random_model("mnc"), photo()
    tta = with_tta(model, min_sizes=[128, TEST_SIZE], max_size=448, flip=True)
    proposals = spy(model.proposal_generator, "forward")
    votes = spy(model.roi_heads, "_instances")
    instances = run(tta, inputs)
    [vote] = votes
    image_size, class_boxes, probs, masks, mask_boxes = vote.args
    assert image_size == (inputs["height"], inputs["width"])
    pairs = model.roi_heads.test_num_stages // 2
    assert len(proposals) == 4 and len(probs) == len(masks) == pairs * sum(len(p.out[0][0]) for p in proposals)
    assert len(instances) == len(vote.out) > 0


def test_mmdetection2_merge_nms_of_every_augmentations_proposals():
    """mmdetection 2's merge_aug_proposals: the proposals of all augmentations, in the original image, go
    through one class-agnostic NMS at the RPN's threshold; the best post_nms_topk are kept."""
    model, inputs = random_model("scnet"), photo()
    rpn = model.proposal_generator
    rpn.post_nms_topk[False] = 50
    tta = with_tta(model, min_sizes=[128, TEST_SIZE], max_size=448, flip=True, merge="mmdetection2")
    augmented, tfms = tta._get_augmented_inputs(inputs)
    with torch.no_grad():
        proposals = [tta._features_and_proposals(x)[2] for x in augmented]
    boxes, logits = tta._merge_proposals(proposals, tfms)
    assert len(boxes) == 50 < sum(len(p) for p in proposals)
    assert max_overlap(boxes) <= rpn.nms_thresh
    assert torch.equal(logits, logits.sort(descending=True).values)
    assert logits[0] == max(p.objectness_logits.max() for p in proposals)
    # An augmentation's proposals given twice: the copies are suppressed.
    once = tta._merge_proposals(proposals[:1], [T.NoOpTransform()])
    twice = tta._merge_proposals(proposals[:1] * 2, [T.NoOpTransform()] * 2)
    assert all(torch.equal(a, b) for a, b in zip(once, twice))


def test_mmdetection2_merge_averages_every_roi_over_the_augmentations(spy):
    """Each RoI's boxes and scores are the mean of the augmentations' (here the original and its flip),
    taken before the per-class NMS."""
    model, inputs = random_model("scnet"), photo()
    tta = with_tta(model, min_sizes=[TEST_SIZE], max_size=448, flip=True, merge="mmdetection2")
    candidates = spy(model.roi_heads, "forward_box_candidates")
    nms_inputs = spy(test_time_augmentation, "fast_rcnn_inference")
    run(tta, inputs)
    (plain_boxes, plain_scores), = candidates[0].out
    (flip_boxes, flip_scores), = candidates[1].out
    [merged_boxes], [merged_scores] = nms_inputs[0].args[:2]
    torch.testing.assert_close(merged_scores, (plain_scores + flip_scores) / 2)
    # The flipped run's boxes, clipped and mirrored back into the (resized) image, then rescaled.
    height, width = inputs["image"].shape[1:]
    scale = torch.tensor([inputs["width"] / width, inputs["height"] / height] * 2)
    flip_boxes = flip_boxes.clone()
    flip_boxes[:, 0::2] = flip_boxes[:, 0::2].clamp(0, width)
    flip_boxes[:, 1::2] = flip_boxes[:, 1::2].clamp(0, height)
    unflipped = torch.stack([width - flip_boxes[:, 2], flip_boxes[:, 1], width - flip_boxes[:, 0], flip_boxes[:, 3]], 1)
    plain_boxes = plain_boxes.clone()
    plain_boxes[:, 0::2] = plain_boxes[:, 0::2].clamp(0, width)
    plain_boxes[:, 1::2] = plain_boxes[:, 1::2].clamp(0, height)
    torch.testing.assert_close(merged_boxes, (plain_boxes + unflipped) * scale / 2, rtol=0, atol=1e-3)


@pytest.mark.parametrize("settings, message", [
    (dict(min_sizes=[], max_size=448, flip=True), "test.aug.min_sizes must be a non-empty list"),
    (dict(min_sizes=800, max_size=1333, flip=True), "test.aug.min_sizes must be a non-empty list"),
    (dict(min_sizes=[600, 0], max_size=1333, flip=True), r"test.aug.min_sizes\[1\] must be a positive integer"),
    (dict(min_sizes=[600], max_size=-1, flip=True), "test.aug.max_size must be a positive integer"),
    (dict(min_sizes=[600.5], max_size=1333, flip=True), r"test.aug.min_sizes\[0\] must be a positive integer"),
    (dict(min_sizes=[600], max_size=1333, flip="yes"), "test.aug.flip must be True or False"),
    (dict(min_sizes=[600], max_size=1333, flip=True, merge="mean"), "test.aug.merge must be one of"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        check_tta_settings(**settings)
    with pytest.raises(ValueError, match=message):
        with_tta(random_model("mask_rcnn"), **settings)


def test_per_roi_merge_needs_the_cascades_heads():
    with pytest.raises(TypeError, match="merge='mmdetection2'.*StandardROIHeads"):
        with_tta(random_model("mask_rcnn"), min_sizes=[600], max_size=1000, merge="mmdetection2")
    with pytest.raises(TypeError, match="needs a GeneralizedRCNN"):
        RCNNWithTTA(torch.nn.Linear(1, 1), min_sizes=[600], max_size=1000)
    assert isinstance(random_model("mask_rcnn"), GeneralizedRCNN)
