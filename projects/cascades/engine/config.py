"""Loading a LazyConfig from the command line, with errors that name the bad argument."""

import contextlib
import difflib
import os

from omegaconf import OmegaConf

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.registry import locate

from ..data.storage import DATASETS_HINT, datasets_root
from .checkpoint import CheckpointMismatchError

__all__ = ["apply_overrides", "check_datasets", "check_training_settings", "exit_on_bad_input", "load_config",
           "resolve_config_file"]

_MISSING = object()


def resolve_config_file(config_file):
    """A path to a LazyConfig .py file, or a model-zoo name such as "DefaultShapes/<name>.py"."""
    if not config_file:
        raise ValueError("--config-file is required: a LazyConfig .py file, e.g. "
                         "configs/DefaultShapes/scnet_R_18_FPN_demo.py")
    if not config_file.endswith(".py"):
        raise ValueError(f"--config-file {config_file!r}: expected a LazyConfig .py file (yaml configs "
                         "are not supported by this project)")
    if os.path.isfile(config_file):
        return config_file
    from cascades.model_zoo import get_config_file

    try:
        return get_config_file(config_file)
    except RuntimeError:
        raise FileNotFoundError(f"--config-file {config_file!r} does not exist, neither as a path nor as "
                                "a model-zoo name under configs/") from None


def _leaf_keys(node, prefix=""):
    if OmegaConf.is_dict(node):
        items = node.items_ex(resolve=False)
    elif OmegaConf.is_list(node):
        items = enumerate(node)
    else:
        return [prefix]
    keys = [prefix] if prefix else []
    for k, v in items:
        keys += _leaf_keys(v, f"{prefix}.{k}" if prefix else str(k))
    return keys


def apply_overrides(cfg, overrides):
    """``LazyConfig.apply_overrides``, but a key that is not in the config is an error (a typo would
    otherwise add a new key that nothing reads). Prefix the key with ``+`` to add one on purpose."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        raise ValueError(f"Config overrides must be key=value pairs; could not parse {overrides}: {e}") from None
    known = None
    for o in parsed:
        if o.is_add() or OmegaConf.select(cfg, o.key_or_group, default=_MISSING) is not _MISSING:
            continue
        known = known or _leaf_keys(cfg)
        close = difflib.get_close_matches(o.key_or_group, known, n=3, cutoff=0.6)
        raise KeyError(f"Override {o.input_line!r}: the config has no key {o.key_or_group!r}"
                       + (f"; did you mean {' or '.join(close)}?" if close else "")
                       + " (prefix the key with '+' to add a new one)")
    return LazyConfig.apply_overrides(cfg, overrides)


def load_config(config_file, overrides=()):
    return apply_overrides(LazyConfig.load(resolve_config_file(config_file)), list(overrides))


def _dataset_names(cfg):
    for split in ("train", "test"):
        dataset = OmegaConf.select(cfg, f"dataloader.{split}.dataset", default=None)
        if dataset is None or dataset.get("names") is None:
            continue
        if isinstance(dataset.get("_target_"), str):
            # Importing the loader's module may register datasets, as instantiating the config would.
            locate(dataset._target_)
        yield from [dataset.names] if isinstance(dataset.names, str) else dataset.names


def check_datasets(cfg):
    """Fails early, naming the dataset and the missing file, when a dataset of the config is not
    registered or its files are not under $DETECTRON2_DATASETS."""
    for name in _dataset_names(cfg):
        if name not in DatasetCatalog:
            raise KeyError(f"Dataset {name!r} of the config is not registered (datasets under "
                           f"{datasets_root()} are registered only when their folder exists: "
                           f"{DATASETS_HINT}); registered datasets: {', '.join(sorted(DatasetCatalog.keys()))}")
        meta = MetadataCatalog.get(name).as_dict()
        if meta.get("generated"):
            continue
        for key in ("json_file", "image_root"):
            if key in meta and not os.path.exists(meta[key]):
                raise FileNotFoundError(
                    f"Dataset {name!r}: its {key} {meta[key]!r} does not exist. Datasets are found under "
                    f"{datasets_root()} ({DATASETS_HINT})")


def _check_int(cfg, key, minimum, extra=""):
    value = OmegaConf.select(cfg, key, default=_MISSING)
    if value is _MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}{extra}; got {value!r}")
    return value


def check_training_settings(cfg, world_size=1):
    """Fails before anything starts, naming the key, on training settings that detectron2 would trip
    over only later (a string or negative max_iter, a checkpoint period of 0, an empty batch), and on
    an LR schedule that cannot be built for them."""
    _check_int(cfg, "train.max_iter", 1)
    _check_int(cfg, "train.checkpointer.period", 1)
    if OmegaConf.select(cfg, "train.checkpointer.max_to_keep", default=None) is not None:
        _check_int(cfg, "train.checkpointer.max_to_keep", 1, " or None")
    _check_int(cfg, "train.log_period", 1)
    _check_int(cfg, "train.eval_period", 0, " (0: no periodic evaluation)")
    batch = _check_int(cfg, "dataloader.train.total_batch_size", 1)
    if batch is not None and batch % world_size:
        raise ValueError(f"dataloader.train.total_batch_size={batch} must be divisible by the number of "
                         f"processes ({world_size}: --num-gpus x --num-machines)")
    if "lr_multiplier" in cfg:
        instantiate(cfg.lr_multiplier)


@contextlib.contextmanager
def exit_on_bad_input(prog):
    """Turns errors in what the user gave (paths, config keys and values, checkpoints) into a one-line
    exit message instead of a traceback."""
    try:
        yield
    except (FileNotFoundError, KeyError, ValueError, CheckpointMismatchError) as e:
        # str() of a KeyError is its repr; the message is its argument.
        raise SystemExit(f"{prog}: error: {e.args[0] if isinstance(e, KeyError) else e}") from None
