"""Small cascades with random weights on real photos (balloon val, or the generated shapes without it)."""

import torch

import detectron2.data.transforms as T
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image

from balloon_small_configs import load_balloon_small


def photos(count: int = 3):
    """``count`` photos resized as the small configs' test mapper does (short side 256, long <= 448):
    balloon val, whose photos come in several sizes and orientations, else the generated shapes."""
    import cascades.data  # noqa: F401  registers balloon_* when present
    import cascades.data.default_shapes  # noqa: F401  registers the generated shapes

    name = "balloon_val" if "balloon_val" in DatasetCatalog.list() else "cascades_shapes_val"
    resize = T.ResizeShortestEdge(256, 448)
    images = []
    for record in DatasetCatalog.get(name)[:count]:
        image = read_image(record["file_name"], format="BGR")
        image = resize.get_transform(image).apply_image(image)
        images.append(torch.as_tensor(image.astype("float32").transpose(2, 0, 1)))
    return images


def random_model(name: str, images, seed: int = 0, **roi_heads_overrides):
    """The small config's model with random weights, its BatchNorm statistics taken from ``images``:
    with the default statistics (mean 0, variance 1) the random backbone's features grow large enough
    to saturate every class probability to 0 or 1, and the detections' scores then tie."""
    cfg = load_balloon_small(name)
    cfg.model.roi_heads.update(roi_heads_overrides)
    torch.manual_seed(seed)
    model = instantiate(cfg.model)
    model.train()
    with torch.no_grad():
        for _ in range(10):
            for image in images:
                model.backbone(model.preprocess_image([{"image": image}]).tensor)
    return model.eval()
