"""Where datasets are found and how dataset files are written.

Datasets live under :func:`datasets_root` (detectron2's convention: ``$DETECTRON2_DATASETS``, else
``./datasets``). Files derived from them (split lists, generated images) go to :func:`cache_root` unless
a caller has a better place. Every write is atomic: a folder is built under a temporary name beside its
final place and renamed into place, a file is written to a temporary file and replaced, so an interrupted
run leaves nothing half-written and concurrent writers (DDP ranks) cannot corrupt each other.
"""
import contextlib
import json
import os
import shutil
import stat
import tempfile

__all__ = ["DATASETS_HINT", "cache_root", "datasets_root", "missing_message", "publish_folder", "writable",
           "write_json"]

# What a user does when a dataset is not found: said by every skip and error message about it.
DATASETS_HINT = "set DETECTRON2_DATASETS or run `make datasets`"


def datasets_root() -> str:
    """``$DETECTRON2_DATASETS`` (``~`` expanded), or ``datasets`` relative to the working directory."""
    return os.path.expanduser(os.environ.get("DETECTRON2_DATASETS") or "datasets")


def cache_root() -> str:
    """The folder of derived files: ``~/.cache/detectron2_cascades``."""
    return os.path.join(os.path.expanduser("~"), ".cache", "detectron2_cascades")


def missing_message(what: str) -> str:
    """One line for a skip or an error: ``what`` is not under the datasets root, and what to do."""
    return f"{what} not found under {datasets_root()} ({DATASETS_HINT})"


def writable(folder: str) -> bool:
    """Whether ``folder`` exists and is writable, by its mode bits too: root may write anywhere, but a
    share marked read-only should stay untouched."""
    return (os.path.isdir(folder) and os.access(folder, os.W_OK)
            and bool(os.stat(folder).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)))


@contextlib.contextmanager
def publish_folder(final: str):
    """Yields a new empty folder; when the block ends without an error it is renamed to ``final``,
    otherwise removed. If another process published ``final`` first, its copy is kept."""
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(final)}-", dir=parent)
    try:
        staged = os.path.join(tmp, "staged")
        os.mkdir(staged)
        yield staged
        try:
            os.rename(staged, final)
        except OSError:
            if not os.path.isdir(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str, data) -> None:
    """Writes ``data`` as JSON to ``path`` through a temporary file in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from the other users of a share
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
