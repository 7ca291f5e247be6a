"""Mutants of the conversion of mmdetection's checkpoints (docs/MMDET.md): the conventions that make the
converted weights compute mmdetection's function, the renaming where shapes cannot tell, the class
layers, and the loading rules (verified files, weights_only, never lenient)."""
from mutants import Mutant

CKPT = "projects/cascades/checkpoint"
CONVENTIONS = f"{CKPT}/mmdet_conventions.py"
CONVERSION = f"{CKPT}/mmdet_conversion.py"
FILES = f"{CKPT}/mmdet_files.py"
ENGINE = "projects/cascades/engine/checkpoint.py"
GOLDEN = "tests/checkpoint/test_mmdet_golden.py::test_every_stage_and_the_detections_are_mmdetections"
GOLDEN_CASCADE = f"{GOLDEN}[cascade_mask_rcnn_R_50_FPN_1x]"
GOLDEN_SCNET = f"{GOLDEN}[scnet_R_50_FPN_1x]"
CONVERSION_TESTS = "tests/checkpoint/test_mmdet_conversion.py"
FILES_TESTS = "tests/checkpoint/test_mmdet_files.py"
LOADING_TESTS = "tests/checkpoint/test_mmdet_loading.py"

MUTANTS = [
    Mutant(
        name="checkpoint_stride_in_1x1",
        concept="mmdetection's ResNets are pytorch-style: a bottleneck's stride is in its 3x3 conv",
        path=CONVENTIONS,
        old="stride_in_1x1=False,",
        new="stride_in_1x1=True,",
        tests=[GOLDEN_CASCADE],
    ),
    Mutant(
        name="checkpoint_pixel_mean_bgr",
        concept="mmdetection normalizes RGB input by ImageNet's mean in RGB order",
        path=CONVENTIONS,
        old="MMDET_PIXEL_MEAN = [123.675, 116.28, 103.53]",
        new="MMDET_PIXEL_MEAN = [103.53, 116.28, 123.675]",
        tests=[GOLDEN_CASCADE],
    ),
    Mutant(
        name="checkpoint_input_bgr",
        concept="the converted models take RGB images (the test mapper and Predictor convert cv2's BGR)",
        path=CONVENTIONS,
        old='dataloader.train.mapper.image_format = "RGB"',
        new='dataloader.train.mapper.image_format = "BGR"',
        tests=[GOLDEN_CASCADE],
    ),
    Mutant(
        name="checkpoint_pixel_std_one",
        concept="mmdetection divides the input by ImageNet's std (detectron2's default is 1)",
        path=CONVENTIONS,
        old="MMDET_PIXEL_STD = [58.395, 57.12, 57.375]",
        new="MMDET_PIXEL_STD = [1.0, 1.0, 1.0]",
        tests=[GOLDEN_CASCADE],
    ),
    Mutant(
        name="checkpoint_resnext_width_not_grouped",
        concept="a ResNeXt bottleneck is groups x width wide in res2, doubling per stage",
        path=CONVENTIONS,
        old="bottleneck_channels=groups * width_per_group * 2**k,",
        new="bottleneck_channels=width_per_group * 2**k,",
        tests=[f"{CONVERSION_TESTS}::test_every_tensor_converts_into_the_config_built_for_it"],
    ),
    Mutant(
        name="checkpoint_box_coder_stds_swapped",
        concept="each box stage decodes with mmdetection's target stds (x, y, w, h) as weights 1 / std",
        path=CONVENTIONS,
        old="tuple(1.0 / s for s in stds)",
        new="tuple(1.0 / s for s in reversed(stds))",
        tests=[GOLDEN_CASCADE],
    ),
    Mutant(
        name="checkpoint_score_threshold",
        concept="the released config's test score threshold (0.001 for SCNet and HTC)",
        path=CONVENTIONS,
        old="predictor.test_score_thresh = score_thresh",
        new="predictor.test_score_thresh = 0.05",
        tests=["tests/checkpoint/test_mmdet_model_zoo.py::test_configs_follow_mmdetections_conventions"],
    ),
    Mutant(
        name="checkpoint_fpn_output_levels_reversed",
        concept="mmdetection's FPN output conv i is detectron2's p(i+2) (all of the same shape)",
        path=CONVERSION,
        old='_sub("backbone.fpn_output{p}.{2}", p=_plus(1, 2))',
        new='_sub("backbone.fpn_output{p}.{2}", p=lambda m: str(5 - int(m[1])))',
        tests=[GOLDEN_CASCADE],
    ),
    Mutant(
        name="checkpoint_scnet_residual_convs_swapped",
        concept="SCNet's residual pairs: mmdetection's conv1 and conv2 of a SimplifiedBasicBlock, in order",
        path=CONVERSION,
        old='_sub("roi_heads.mask_head.0.convs.res_block{b}.conv{2}.{3}", b=_plus(1, 1))',
        new='_sub("roi_heads.mask_head.0.convs.res_block{b}.conv{c}.{3}", b=_plus(1, 1), c=lambda m: str(3 - int(m[2])))',
        tests=[GOLDEN_SCNET],
    ),
    Mutant(
        name="checkpoint_background_counted_as_class",
        concept="the box classifier's last output is the background, not a class",
        path=CONVERSION,
        old='num_classes=state_dict["roi_head.bbox_head.0.fc_cls.weight"].shape[0] - 1,',
        new='num_classes=state_dict["roi_head.bbox_head.0.fc_cls.weight"].shape[0],',
        tests=[CONVERSION_TESTS],
    ),
    Mutant(
        name="checkpoint_fine_tuning_keeps_mask_predictors",
        concept="fine-tuning on another label set leaves out every class-specific layer, mask predictors too",
        path=CONVERSION,
        old=r"box_predictor\.\d+\.cls_score|mask_head\.\d+\.predictor|",
        new=r"box_predictor\.\d+\.cls_score|",
        tests=[f"{CONVERSION_TESTS}::test_fine_tuning_drops_the_class_specific_layers_with_one_warning",
               f"{LOADING_TESTS}::test_fine_tuning_leaves_out_the_class_layers_with_one_warning"],
    ),
    Mutant(
        name="checkpoint_not_weights_only",
        concept="checkpoints are read with torch.load(weights_only=True): pickled objects are not run",
        path=FILES,
        old="loaded = torch.load(path, map_location=\"cpu\", weights_only=True)",
        new="loaded = torch.load(path, map_location=\"cpu\", weights_only=False)",
        tests=[f"{FILES_TESTS}::test_pickled_objects_are_refused_not_executed"],
    ),
    Mutant(
        name="checkpoint_sha256_not_checked",
        concept="files and downloads are verified against the sha256 prefix in their names",
        path=FILES,
        old="if expected and not digest.startswith(expected):",
        new="if False:",
        tests=[f"{FILES_TESTS}::test_file_whose_sha256_differs_from_its_name_is_refused"],
    ),
    Mutant(
        name="checkpoint_download_kept_before_verified",
        concept="a download enters the cache only once verified",
        path=FILES,
        old="_verify(partial, url)\n        os.replace(partial, path)",
        new="os.replace(partial, path)\n        _verify(path, url)",
        tests=[f"{FILES_TESTS}::test_downloads_are_verified_before_they_are_kept"],
    ),
    Mutant(
        name="checkpoint_conversion_not_reused",
        concept="a conversion is cached and reused (one per source file, named by its sha256)",
        path=FILES,
        old="if os.path.isfile(out):\n        return out",
        new="if False:\n        return out",
        tests=[f"{FILES_TESTS}::test_conversion_is_cached_and_reused"],
    ),
    Mutant(
        name="checkpoint_inference_drops_class_layers",
        concept="for inference (strict loading) another class count is an error, not a partial load",
        path=ENGINE,
        old="fine_tuning=not self.strict,",
        new="fine_tuning=True,",
        tests=[f"{LOADING_TESTS}::test_another_class_count_is_a_one_line_error_for_inference"],
    ),
    Mutant(
        name="checkpoint_unconverted_file_loads_leniently",
        concept="an mmdetection file without mmdet:// is refused with the path that converts it",
        path=ENGINE,
        old='refuse_mmdet_layout(checkpoint["model"], source)',
        new="pass",
        tests=[f"{LOADING_TESTS}::test_unconverted_mmdet_file_is_refused_naming_the_mmdet_path"],
    ),
]
