"""Writes mmdet_keys/<model>.json: every tensor name and shape of mmdetection's own model, as built by
mmdetection 3.3.0 from the config that its wheel ships. Run in the reference environment:

    .venv-mmdet/bin/python tests/checkpoint/write_mmdet_keys.py
"""
import json
import os

import mmdet
from mmengine.config import Config
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

CONFIGS = [
    "scnet/scnet_r50_fpn_1x_coco.py",
    "htc/htc_r50_fpn_1x_coco.py",
    "cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py",
    "htc/htc_x101-32x4d_fpn_16xb1-20e_coco.py",
    "scnet/scnet_x101-64x4d_fpn_20e_coco.py",
]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmdet_keys")


def main():
    register_all_modules()
    os.makedirs(OUT, exist_ok=True)
    for config in CONFIGS:
        cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", config))
        cfg.model.backbone.init_cfg = None
        shapes = {k: list(v.shape) for k, v in MODELS.build(cfg.model).state_dict().items()}
        name = os.path.splitext(os.path.basename(config))[0]
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:  # one tensor per line
            f.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items()) + "\n}\n")
        print(name, len(shapes))


if __name__ == "__main__":
    main()
