"""Inference on single images from Python: detectron2's DefaultPredictor for LazyConfigs."""

import numpy as np
import torch
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import instantiate

from .checkpoint import Checkpointer
from .test_aug import tta_model

__all__ = ["Predictor"]


class Predictor:
    """
    Loads ``cfg.model`` with the weights of ``cfg.train.init_checkpoint`` (which must fit the model
    exactly) and runs it on one BGR image at a time, resized like ``cfg.dataloader.test``.

    Example::

        cfg = cascades.model_zoo.get_config("DefaultShapes/scnet_R_18_FPN_demo.py")
        cfg.train.init_checkpoint = "output/demo/model_final.pth"
        outputs = Predictor(cfg)(cv2.imread("input.jpg"))  # {"instances": Instances}

    With ``tta=True`` (by default ``cfg.test.aug.enabled``), the model runs with the test-time augmentation
    of ``cfg.test.aug`` (flips and scales; see :mod:`cascades.engine.test_aug`).
    """

    def __init__(self, cfg, tta=None):
        if not cfg.train.init_checkpoint:
            raise ValueError("Predictor needs trained weights: set train.init_checkpoint to a checkpoint "
                             "path or URL")
        self.device = torch.device(cfg.train.device)
        self.model = instantiate(cfg.model).to(self.device).eval()
        Checkpointer(self.model, strict=True).load(cfg.train.init_checkpoint)
        if tta is None:
            tta = bool(OmegaConf.select(cfg, "test.aug.enabled", default=False))
        if tta:
            self.model = tta_model(cfg, self.model)
        mapper = cfg.dataloader.test.mapper
        self.augmentations = T.AugmentationList([instantiate(a) for a in mapper.augmentations])
        self.input_format = mapper.image_format
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"dataloader.test.mapper.image_format must be BGR or RGB; got {self.input_format!r}")

    def __call__(self, image):
        """
        Args:
            image (np.ndarray): an HxWx3 uint8 image in BGR order, as from ``cv2.imread``.

        Returns:
            dict: the model's outputs for the image, e.g. ``{"instances": Instances}`` in image pixels.
        """
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError("Predictor expects an HxWx3 BGR image (as from cv2.imread); got "
                             + (f"an array of shape {image.shape}" if isinstance(image, np.ndarray)
                                else type(image).__name__))
        height, width = image.shape[:2]
        if height == 0 or width == 0:
            raise ValueError(f"Predictor expects a non-empty image; got one of {height} x {width} pixels")
        if self.input_format == "RGB":
            image = image[:, :, ::-1]
        aug_input = T.AugInput(image)
        self.augmentations(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)).astype("float32"))
        with torch.no_grad():
            return self.model([{"image": tensor.to(self.device), "height": height, "width": width}])[0]
