"""mmdetection checkpoint files and URLs -> converted checkpoints that detectron2's checkpointer loads.

Downloads are verified against the start of the sha256 that mmdetection puts in its file names
(``scnet_r50_fpn_1x_coco-c3f09857.pth``), files are read with ``torch.load(weights_only=True)``, and
each conversion is cached under its source's sha256, written atomically: an interrupted download or
conversion leaves nothing in the cache.
"""
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from typing import Dict

import torch

from .mmdet_conversion import MMDetConversionError, convert_mmdet_state_dict, describe_mmdet_model

__all__ = [
    "CONVERSION_KEY",
    "cache_dir",
    "converted_checkpoint",
    "load_mmdet_state_dict",
    "sha256_of",
]

# Stored in every converted checkpoint: what it was converted from (engine hooks read it).
CONVERSION_KEY = "cascades_mmdet_conversion"
# Bumped when the conversion changes, so that stale cached conversions are not reused.
_CONVERTER_VERSION = 1
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")
_CHUNK = 1 << 20


def cache_dir() -> str:
    """``$CASCADES_CACHE`` or ``~/.cache/cascades``: downloads and converted checkpoints."""
    return os.environ.get("CASCADES_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cascades")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _expected_hash(name: str):
    m = _HASH_IN_NAME.search(name)
    return m[1] if m else None


def _verify(path: str, source: str) -> str:
    """The file's sha256, checked against the prefix its name carries (if any)."""
    digest = sha256_of(path)
    expected = _expected_hash(os.path.basename(source))
    if expected and not digest.startswith(expected):
        raise MMDetConversionError(
            f"{source} is corrupt or truncated: its sha256 starts with {digest[:len(expected)]}, its name "
            f"says {expected}")
    return digest


def _download(url: str) -> str:
    """The local copy of ``url``, downloaded once into the cache and kept only if verified."""
    name = os.path.basename(url.split("?")[0])
    if not _expected_hash(name):
        raise MMDetConversionError(
            f"Cannot verify a download of {url}: its file name carries no sha256 prefix ('<name>-<8 hex>.pth', "
            "as mmdetection publishes them); download it yourself and give the local path")
    folder = os.path.join(cache_dir(), "downloads")
    path = os.path.join(folder, name)
    if os.path.isfile(path):  # verified by the caller, like any local file
        return path
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=folder, prefix=f"{name}.partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for chunk in iter(lambda: response.read(_CHUNK), b""):
                        f.write(chunk)
            except (urllib.error.URLError, OSError) as e:
                raise MMDetConversionError(
                    f"Cannot download {url} ({getattr(e, 'reason', e)}): expected a reachable mmdetection "
                    "checkpoint URL; without a network, download it elsewhere and give the local path") from e
        _verify(partial, url)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def load_mmdet_state_dict(path: str, source: str = None) -> Dict[str, torch.Tensor]:
    """The state dict of an mmdetection checkpoint file (``{"state_dict": ...}`` or bare), read with
    ``weights_only=True``."""
    source = source or path
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused:
            raise MMDetConversionError(
                f"{source} holds a pickled {refused[1]}, which torch.load(weights_only=True) refuses to "
                "execute: expected an mmdetection checkpoint of tensors and plain metadata") from e
        raise MMDetConversionError(
            f"Cannot read {source} as a PyTorch checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}): "
            "expected an mmdetection .pth file; is it truncated?") from e
    state_dict = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise MMDetConversionError(f"{source} holds no state dict of tensors (expected an mmdetection checkpoint)")
    return state_dict


def _atomic_save(obj, path: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def converted_checkpoint(source: str) -> str:
    """
    The path of the converted checkpoint of ``source`` (an mmdetection checkpoint file or URL),
    converting it on first use. The result is a detectron2 checkpoint: ``{"model": state_dict,
    CONVERSION_KEY: {...}}`` with this project's module names.
    """
    if _is_url(source):
        path = _download(source)
    elif os.path.isfile(source):
        path = source
    else:
        raise MMDetConversionError(f"mmdetection checkpoint {source!r} does not exist (expected a file or URL)")
    digest = _verify(path, source)
    stem = os.path.basename(path).rsplit(".", 1)[0]
    out = os.path.join(cache_dir(), "converted", f"{stem}.v{_CONVERTER_VERSION}.{digest[:16]}.pth")
    if os.path.isfile(out):
        return out
    state_dict = load_mmdet_state_dict(path, source)
    info = describe_mmdet_model(state_dict)
    model = convert_mmdet_state_dict(state_dict)
    _atomic_save(
        {"model": model, "matching_heuristics": False,
         CONVERSION_KEY: {"source": source, "sha256": digest, **info._asdict(), "backbone": info.backbone}},
        out,
    )
    return out
