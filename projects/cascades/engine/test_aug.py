"""``test.aug``: the test-time augmentation settings of a LazyConfig (detectron2's ``TEST.AUG``), and the
model they wrap (:func:`cascades.modeling.test_time_augmentation.with_tta`).

Keys: ``enabled`` (train_net.py also evaluates with TTA; ``--tta`` sets it), ``min_sizes`` (short-edge
sizes, one augmentation each), ``max_size``, ``flip`` (each size also flipped horizontally), ``merge``
("detectron2" or "mmdetection2", see the modeling module). A config without ``test.aug`` (or with only
some keys) gets the released SCNet TTA's scales relative to its own test size (:func:`scaled_test_aug`).
"""
from omegaconf import OmegaConf

from cascades.modeling.test_time_augmentation import check_tta_settings, with_tta

__all__ = ["DEFAULTS", "SCNET_RELEASE_SCALES", "add_test_aug", "config_test_size", "resolve_test_aug",
           "scaled_test_aug", "tta_model"]

# The released SCNet TTA (the commented test pipeline of mmdetection's configs/scnet/scnet_r50_fpn_1x_coco.py,
# img_scale (600, 900) to (1400, 2100), flip=True): short sides 600 to 1400 for a model tested at 800, and
# their flips. Its long-side cap, 1.5 times each short side, has no counterpart in detectron2's TEST.AUG
# (one max size for all sizes).
SCNET_RELEASE_SCALES = (0.75, 1.0, 1.25, 1.5, 1.75)


# The settings other than the sizes, when the config does not give them.
DEFAULTS = dict(enabled=False, flip=True, merge="detectron2")
KEYS = ("enabled", "min_sizes", "max_size", "flip", "merge")


def scaled_test_aug(short_edge: int, max_size: int, scales=SCNET_RELEASE_SCALES, **settings) -> dict:
    """A ``test.aug`` node for a model tested at short side ``short_edge`` (longest side ``max_size``):
    the short sides ``short_edge * scales``, the longest side capped at ``max_size`` times the largest
    scale; ``settings`` (flip, merge, enabled) override :data:`DEFAULTS`."""
    sizes = dict(min_sizes=[round(short_edge * s) for s in scales], max_size=round(max_size * max(scales)))
    return {**DEFAULTS, **sizes, **settings}


def config_test_size(cfg):
    """(short edge, max size) of the ResizeShortestEdge of ``dataloader.test``'s mapper."""
    for aug in OmegaConf.select(cfg, "dataloader.test.mapper.augmentations", default=None) or []:
        if "ResizeShortestEdge" in str(aug.get("_target_", "")):
            short = aug.short_edge_length
            return (max(short) if OmegaConf.is_list(short) else short), aug.max_size
    raise ValueError("test.aug: the config has no test.aug.min_sizes/max_size and its dataloader.test.mapper has "
                     "no ResizeShortestEdge to derive them from; set test.aug.min_sizes=[...] and "
                     "test.aug.max_size=...")


def resolve_test_aug(cfg) -> dict:
    """``cfg.test.aug`` as a dict, its missing keys filled from :func:`scaled_test_aug` for the config's test
    size; raises ValueError naming the key when a value is bad."""
    node = OmegaConf.select(cfg, "test.aug", default=None)
    if node is None:
        given = {}
    else:
        given = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    unknown = sorted(given.keys() - set(KEYS))
    if unknown:
        raise ValueError(f"test.aug has unknown keys {unknown}; its keys are {', '.join(KEYS)}")
    defaults = scaled_test_aug(*config_test_size(cfg)) if {"min_sizes", "max_size"} - given.keys() else DEFAULTS
    settings = {**defaults, **given}
    if not isinstance(settings["enabled"], bool):
        raise ValueError(f"test.aug.enabled must be True or False; got {settings['enabled']!r}")
    check_tta_settings(settings["min_sizes"], settings["max_size"], settings["flip"], settings["merge"])
    return settings


def add_test_aug(cfg, enable=False):
    """With ``enable`` (train_net.py's ``--tta``) or a ``test.aug`` in ``cfg``: sets ``cfg.test.aug`` to its
    complete, checked settings (:func:`resolve_test_aug`), enabled with ``enable``. Returns ``cfg``."""
    if not enable and OmegaConf.select(cfg, "test.aug", default=None) is None:
        return cfg
    settings = resolve_test_aug(cfg)
    settings["enabled"] = settings["enabled"] or enable
    if "test" not in cfg:
        cfg.test = {}
    cfg.test.aug = settings
    return cfg


def tta_model(cfg, model):
    """``model`` with the test-time augmentation of ``cfg.test.aug`` (whether enabled or not)."""
    settings = resolve_test_aug(cfg)
    del settings["enabled"]
    return with_tta(model, **settings)
