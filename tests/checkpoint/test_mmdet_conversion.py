"""mmdetection state dicts -> ours, on every tensor of mmdetection 3.3.0's own models (mmdet_samples.py)
filled with random values, converted without mmdetection."""
import logging

import pytest
import torch

from cascades.checkpoint import (
    MMDetConversionError,
    check_fits,
    convert_mmdet_state_dict,
    describe_mmdet_model,
    fit_to_model,
)

from mmdet_samples import mmdet_state_dict, our_model

# manifest -> (our config, what describe_mmdet_model reads from it)
MODELS = {
    "scnet_r50_fpn_1x_coco": ("scnet_R_50_FPN_1x", ("scnet", 50, 1, 64, 80, True)),
    "htc_r50_fpn_1x_coco": ("htc_R_50_FPN_1x", ("htc", 50, 1, 64, 80, True)),
    "cascade-mask-rcnn_r50_fpn_1x_coco": ("cascade_mask_rcnn_R_50_FPN_1x", ("cascade_mask_rcnn", 50, 1, 64, 80, False)),
    "htc_x101-32x4d_fpn_16xb1-20e_coco": ("htc_X_101_32x4d_FPN_20e", ("htc", 101, 32, 4, 80, True)),
    "scnet_x101-64x4d_fpn_20e_coco": ("scnet_X_101_64x4d_FPN_20e", ("scnet", 101, 64, 4, 80, True)),
}


@pytest.mark.parametrize("name", MODELS)
def test_every_tensor_converts_into_the_config_built_for_it(name):
    config, description = MODELS[name]
    source = mmdet_state_dict(name)
    assert tuple(describe_mmdet_model(source)) == description
    model = our_model(config)
    converted = convert_mmdet_state_dict(source, model.state_dict())
    model.load_state_dict(converted, strict=False)  # num_batches_tracked: FrozenBN has none
    ours = model.state_dict()
    # Same tensors, once each: the renaming is a bijection onto the model's tensors.
    kept = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    assert len(kept) == len(converted) == len(ours)
    assert sorted(float(v.double().sum()) for v in kept) == sorted(float(v.double().sum()) for v in ours.values())


def _assert_renamed(name, pairs):
    source = mmdet_state_dict(name)
    converted = convert_mmdet_state_dict(source)
    for theirs, ours in pairs.items():
        assert torch.equal(converted[ours], source[theirs]), theirs


def test_names_follow_detectron2_not_positions():
    """The stride-carrying 3x3 conv of a pytorch-style bottleneck is conv2 on both sides, mmdetection's
    FPN level i is p(i+2), and HTC's mask head t > 0 takes the previous head's features through its
    conv_res."""
    _assert_renamed("htc_r50_fpn_1x_coco", {
        "backbone.layer2.0.conv2.weight": "backbone.bottom_up.res3.0.conv2.weight",
        "backbone.layer2.0.bn2.running_var": "backbone.bottom_up.res3.0.conv2.norm.running_var",
        "backbone.layer4.0.downsample.0.weight": "backbone.bottom_up.res5.0.shortcut.weight",
        "neck.lateral_convs.0.conv.weight": "backbone.fpn_lateral2.weight",
        "neck.fpn_convs.3.conv.bias": "backbone.fpn_output5.bias",
        "rpn_head.rpn_reg.weight": "proposal_generator.rpn_head.anchor_deltas.weight",
        "roi_head.bbox_head.2.shared_fcs.1.weight": "roi_heads.box_head.2.fc2.weight",
        "roi_head.bbox_head.1.fc_cls.bias": "roi_heads.box_predictor.1.cls_score.bias",
        "roi_head.mask_head.2.conv_res.conv.weight": "roi_heads.mask_head.2.prev_stage_proj.weight",
        "roi_head.mask_head.0.convs.3.conv.weight": "roi_heads.mask_head.0.mask_fcn4.weight",
        "roi_head.semantic_head.conv_embedding.conv.weight": "roi_heads.semantic_head.embedding.weight",
    })


def test_scnet_residual_blocks_and_branches():
    _assert_renamed("scnet_r50_fpn_1x_coco", {
        "roi_head.mask_head.convs.5.conv2.weight": "roi_heads.mask_head.0.convs.res_block6.conv2.weight",
        "roi_head.semantic_head.convs.1.conv1.bias": "roi_heads.semantic_head.convs.res_block2.conv1.bias",
        "roi_head.glbctx_head.convs.0.conv2.weight": "roi_heads.global_context_head.convs.res_block1.conv2.weight",
        "roi_head.glbctx_head.fc.weight": "roi_heads.global_context_head.classifier.weight",
        "roi_head.feat_relay_head.fc.bias": "roi_heads.feature_relays.0.fc.bias",
    })


def test_state_dict_inside_a_checkpoint_or_bare_is_the_same(tmp_path):
    from cascades.checkpoint import load_mmdet_state_dict

    source = mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco")
    torch.save({"state_dict": source, "meta": {"epoch": 12, "CLASSES": ("person",)}}, tmp_path / "wrapped.pth")
    torch.save(source, tmp_path / "bare.pth")
    for path in ("wrapped.pth", "bare.pth"):
        loaded = load_mmdet_state_dict(str(tmp_path / path))
        assert loaded.keys() == source.keys()


def test_unknown_tensors_are_named():
    source = mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco")
    source["roi_head.bbox_head.0.extra_fc.weight"] = torch.zeros(2)
    with pytest.raises(MMDetConversionError, match=r"1 mmdetection tensors have no counterpart here: "
                                                   r"roi_head\.bbox_head\.0\.extra_fc\.weight"):
        convert_mmdet_state_dict(source)


def test_missing_extra_and_misshaped_target_tensors_are_named():
    converted = convert_mmdet_state_dict(mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco"))
    target = {k: v.clone() for k, v in converted.items()}
    target["roi_heads.mask_head.0.mask_fcn5.weight"] = torch.zeros(1)
    target["roi_heads.box_head.0.fc1.weight"] = torch.zeros(3, 3)
    converted["backbone.extra.bias"] = torch.zeros(1)
    with pytest.raises(MMDetConversionError) as e:
        check_fits(converted, target)
    message = str(e.value)
    assert "1 model tensors not in the checkpoint: roi_heads.mask_head.0.mask_fcn5.weight" in message
    assert "1 checkpoint tensors not in the model: backbone.extra.bias" in message
    assert "roi_heads.box_head.0.fc1.weight (1024, 12544) vs (3, 3)" in message
    assert "\n" not in message


def test_mmdetection_1_layout_is_refused_with_the_upgrade_command():
    source = {k.replace("roi_head.", ""): v for k, v in mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco").items()}
    with pytest.raises(MMDetConversionError, match="mmdetection 1.x checkpoint .*upgrade_model_version.py"):
        convert_mmdet_state_dict(source)


def test_other_architectures_are_refused_in_one_line():
    """A Mask R-CNN (one box head, no stage index) is not a cascade."""
    source = mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco")
    later_stages = tuple(f"roi_head.{head}.{t}." for head in ("bbox_head", "mask_head") for t in (1, 2))
    mask_rcnn = {k.replace("bbox_head.0.", "bbox_head.").replace("mask_head.0.", "mask_head."): v
                 for k, v in source.items() if not k.startswith(later_stages)}
    with pytest.raises(MMDetConversionError, match="Unsupported architecture: expected an mmdetection SCNet, "
                                                   "HTC or Cascade Mask R-CNN") as e:
        convert_mmdet_state_dict(mask_rcnn)
    assert "\n" not in str(e.value)
    resnet18 = {k: v for k, v in source.items() if not k.startswith("backbone.layer3.") or ".0." in k}
    with pytest.raises(MMDetConversionError, match="expected ResNet/ResNeXt-50 or -101 .* found 1 blocks"):
        describe_mmdet_model(resnet18)


def _few_classes(converted, classes):
    target = {k: v.clone() for k, v in converted.items()}
    for k in list(target):
        if "cls_score" in k:
            target[k] = target[k][: classes + 1]
        elif "mask_head" in k and ".predictor." in k:
            target[k] = target[k][:classes]
    return target


def test_class_count_mismatch_is_an_error_for_inference():
    converted = convert_mmdet_state_dict(mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco"))
    with pytest.raises(MMDetConversionError, match=r"^x\.pth has another label set \(80 classes vs 3 in the "
                                                   r"model\): set the model's class counts") as e:
        fit_to_model(converted, _few_classes(converted, 3), fine_tuning=False, source="x.pth")
    assert "\n" not in str(e.value)


def test_fine_tuning_drops_the_class_specific_layers_with_one_warning(caplog):
    converted = convert_mmdet_state_dict(mmdet_state_dict("cascade-mask-rcnn_r50_fpn_1x_coco"))
    with caplog.at_level(logging.WARNING):
        kept = fit_to_model(converted, _few_classes(converted, 3), fine_tuning=True, source="x.pth")
    assert len(caplog.records) == 1 and "80 classes vs 3 in the model" in caplog.records[0].message
    dropped = set(converted) - set(kept)
    assert dropped == {f"roi_heads.box_predictor.{t}.cls_score.{p}" for t in range(3) for p in ("weight", "bias")} | {
        f"roi_heads.mask_head.{t}.predictor.{p}" for t in range(3) for p in ("weight", "bias")}
    # Everything else must still fit: fine-tuning is no licence to load leniently.
    target = _few_classes(converted, 3)
    del target["backbone.fpn_lateral2.weight"]
    with pytest.raises(MMDetConversionError, match="checkpoint tensors not in the model: backbone.fpn_lateral2"):
        fit_to_model(converted, target, fine_tuning=True)
