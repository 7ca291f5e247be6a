"""SharedBitMasks: the proposals' GT masks index the targets' masks instead of copying them, with exactly
BitMasks' results; the ROI heads train on them with the same losses."""
import pytest
import torch

from detectron2.config import instantiate
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from cascades.modeling import mnc_roi_heads, semantic_cascade_roi_heads
from cascades.modeling.shared_gt_masks import SharedBitMasks, share_gt_masks

from balloon_small_configs import load_balloon_small


def random_masks(n=5, h=40, w=56, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, h, w, generator=g) > 0.6


def test_indexing_composes_the_index_and_copies_no_mask():
    masks = random_masks()
    shared, plain = SharedBitMasks(masks), BitMasks(masks)
    long_index = torch.tensor([4, 0, 0, 2, 4, 1])
    for item in (long_index, 3, -1, slice(1, 4), torch.tensor([True, False, True, True, False])):
        picked = shared[item]
        assert picked.masks is masks, "no copy of the masks"
        assert torch.equal(picked.tensor, plain[item].tensor) and len(picked) == len(plain[item])
    twice = shared[long_index][torch.tensor([5, 0, 3])]
    assert torch.equal(twice.index, torch.tensor([1, 4, 2])) and torch.equal(twice.tensor, masks[[1, 4, 2]])
    assert len(shared[torch.zeros(0, dtype=torch.long)]) == 0
    with pytest.raises(IndexError, match="list of masks"):
        shared[torch.tensor([[0, 1]])]


def test_mask_targets_and_statistics_are_bitmasks():
    masks = random_masks(n=4, h=64, w=48, seed=1)
    masks[2] = False  # an empty mask
    index = torch.tensor([3, 1, 1, 0, 2, 3, 2])
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(len(index), 2, generator=g) * 40
    boxes = torch.cat([xy - 5, xy + 3 + torch.rand(len(index), 2, generator=g) * 30], 1)  # some off the image
    shared, plain = SharedBitMasks(masks)[index], BitMasks(masks[index])
    for size in (7, 14, 28):
        expected = plain.crop_and_resize(boxes, size)
        assert expected.any() and not expected.all()
        assert torch.equal(shared.crop_and_resize(boxes, size), expected)
    assert torch.equal(shared.nonempty(), plain.nonempty())
    assert torch.equal(shared.area(), masks[index].flatten(1).sum(1))
    assert torch.equal(shared.get_bounding_boxes().tensor, plain.get_bounding_boxes().tensor)
    assert torch.equal(shared.to("cpu").tensor, plain.tensor)
    joined = Instances.cat([Instances((64, 48), gt_masks=shared), Instances((64, 48), gt_masks=shared[:2])])
    assert torch.equal(joined.gt_masks.tensor, torch.cat([masks[index], masks[index[:2]]]))
    with pytest.raises(ValueError, match="3 boxes for 7 masks"):
        shared.crop_and_resize(boxes[:3], 7)


def test_only_bitmask_targets_are_shared_and_the_targets_stay_as_they_were():
    bit = Instances((40, 56), gt_boxes=Boxes(torch.zeros(5, 4)), gt_masks=BitMasks(random_masks()))
    poly = Instances((40, 56), gt_boxes=Boxes(torch.zeros(1, 4)),
                     gt_masks=PolygonMasks([[[0.0, 0.0, 10.0, 0.0, 10.0, 10.0]]]))
    boxes_only = Instances((40, 56), gt_boxes=Boxes(torch.zeros(1, 4)))
    shared = share_gt_masks([bit, poly, boxes_only])
    assert type(shared[0].gt_masks) is SharedBitMasks and shared[0].gt_masks.masks is bit.gt_masks.tensor
    assert shared[0].gt_boxes is bit.gt_boxes
    assert type(bit.gt_masks) is BitMasks, "the caller's targets are not modified"
    assert shared[1] is poly and shared[2] is boxes_only


def _inputs(size=128, seed=0):
    """Two images whose instances are rectangles with BitMasks, as an RLE-annotated dataset gives them."""
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(2):
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        boxes = torch.cat([xy, xy + 16 + torch.rand(3, 2, generator=g) * size * 0.3], 1).clamp(max=size - 1)
        masks = torch.zeros(3, size, size, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            masks[k, y0:y1, x0:x1] = True
        gt = Instances((size, size), gt_boxes=Boxes(boxes), gt_classes=torch.zeros(3, dtype=torch.long),
                       gt_masks=BitMasks(masks))
        image = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        inputs.append({"image": image, "instances": gt, "sem_seg": masks.any(0).long()})
    return inputs


@pytest.mark.parametrize("family, module", [("scnet", semantic_cascade_roi_heads), ("htc", semantic_cascade_roi_heads),
                                            ("mnc", mnc_roi_heads)], ids=["scnet", "htc", "mnc"])
def test_training_losses_equal_those_with_copied_masks(family, module, monkeypatch):
    torch.manual_seed(0)
    model = instantiate(load_balloon_small(family).model).train()
    inputs = _inputs()

    def losses():
        torch.manual_seed(1)  # the same samples
        with EventStorage():
            return {k: v.item() for k, v in model(inputs).items()}

    calls, share = [], module.share_gt_masks
    monkeypatch.setattr(module, "share_gt_masks", lambda targets: calls.append(share(targets)) or calls[-1])
    shared = losses()
    assert calls and all(type(t.gt_masks) is SharedBitMasks for t in calls[0])
    monkeypatch.setattr(module, "share_gt_masks", lambda targets: targets)
    copied = losses()
    assert shared == copied
    mask_losses = [k for k in shared if k.startswith("loss_mask")]
    assert mask_losses and all(shared[k] > 0 for k in mask_losses)
