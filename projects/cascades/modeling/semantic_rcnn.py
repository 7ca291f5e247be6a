"""A GeneralizedRCNN that hands per-image semantic segmentation targets to its ROI heads."""
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import ImageList
from detectron2.utils.events import get_event_storage

from ..checkpoint.mmdet_conversion import refuse_mmdet_state_dict

__all__ = ["SemanticRCNN"]


@META_ARCH_REGISTRY.register()
class SemanticRCNN(GeneralizedRCNN):
    """
    :class:`GeneralizedRCNN` for ROI heads with a semantic branch (HTC, SCNet, Cascade Mask R-CNN
    with semantic): in training, each input's ``"sem_seg"`` (H, W) label map is padded like the
    image, with ``sem_seg_ignore_value``, and passed to the ROI heads as ``sem_seg_targets``.
    Inference is GeneralizedRCNN's.
    """

    @configurable
    def __init__(self, *, sem_seg_ignore_value: int = 255, **kwargs):
        super().__init__(**kwargs)
        self.sem_seg_ignore_value = sem_seg_ignore_value
        # detectron2's own DetectionCheckpointer (tools.lazyconfig_train_net) loads a state dict of
        # foreign names leniently, as nothing: an unconverted mmdetection checkpoint is refused instead.
        self.register_load_state_dict_pre_hook(refuse_mmdet_state_dict)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        ret["sem_seg_ignore_value"] = cfg.MODEL.SEMANTIC_HEAD.IGNORE_VALUE
        return ret

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        if "instances" not in batched_inputs[0]:
            raise ValueError("batched_inputs need 'instances' in training")
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        sem_seg_targets = self._sem_seg_targets(batched_inputs)
        features = self.backbone(images.tensor)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(
            images, features, proposals, gt_instances, sem_seg_targets=sem_seg_targets
        )
        if self.vis_period > 0 and get_event_storage().iter % self.vis_period == 0:
            self.visualize_training(batched_inputs, proposals)
        return {**detector_losses, **proposal_losses}

    def _sem_seg_targets(self, batched_inputs):
        """(N, H, W) labels padded like the images, or None if the inputs carry no 'sem_seg'."""
        if not all("sem_seg" in x for x in batched_inputs):
            return None
        for x in batched_inputs:
            if x["sem_seg"].shape != x["image"].shape[-2:]:
                raise ValueError(
                    f"sem_seg has shape {tuple(x['sem_seg'].shape)}, expected the image's "
                    f"{tuple(x['image'].shape[-2:])}"
                )
        return ImageList.from_tensors(
            [self._move_to_current_device(x["sem_seg"]) for x in batched_inputs],
            self.backbone.size_divisibility,
            self.sem_seg_ignore_value,
            self.backbone.padding_constraints,
        ).tensor
