"""Files that appear complete or not at all: a kill mid-write leaves the previous version intact."""

import os
import re

from detectron2.utils.file_io import PathManager

__all__ = ["AtomicFile", "AtomicPathManager", "process_running", "process_start", "remove_stale_partial_files"]

_PARTIAL = re.compile(r".+\.partial-(\d+)(?:-(\d+))?")


def _writer_tag():
    """``<pid>-<process start>`` of this process (``<pid>`` where /proc is absent)."""
    start = process_start(os.getpid())
    return f"{os.getpid()}-{start}" if start else str(os.getpid())


class AtomicFile:
    """``with AtomicFile(path, "wb") as f``: writes go to a temporary file beside ``path``, which
    replaces ``path`` (after fsync) only when the block exits without an exception."""

    def __init__(self, path, mode="w"):
        if "w" not in mode:
            raise ValueError(f"AtomicFile is for writing; got mode={mode!r}")
        self._path = path
        self._tmp = f"{path}.partial-{_writer_tag()}"  # see remove_stale_partial_files
        self._file = open(self._tmp, mode)

    def __enter__(self):
        return self._file

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._file.close()
            os.remove(self._tmp)
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self._path)


class AtomicPathManager:
    """detectron2's PathManager, except that local files opened for writing are ``AtomicFile``s.
    Given to fvcore's Checkpointer, which writes checkpoints and ``last_checkpoint`` through it."""

    def open(self, path, mode="r", **kwargs):
        if "w" in mode and os.path.isdir(os.path.dirname(path) or "."):
            return AtomicFile(path, mode)
        return PathManager.open(path, mode, **kwargs)

    def __getattr__(self, name):
        return getattr(PathManager, name)


def process_start(pid):
    """When process ``pid`` started (clock ticks since boot, from /proc): with the pid, it names one
    process, where a pid alone may have been reused by another process or a thread since. None where
    /proc is absent, "" when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) is in parentheses and may hold spaces; field 22 is the start.
            return f.read().rsplit(")", 1)[1].split()[19]
    except FileNotFoundError:
        return "" if os.path.isdir("/proc") else None
    except (OSError, IndexError):
        return None


def process_running(pid, start=None):
    """Whether the process ``pid`` that started at ``start`` (:func:`process_start`) still runs on this
    host; with no ``start`` (or no /proc), whether any process has that pid."""
    known = process_start(pid) if start else None
    if known is not None:
        return known == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_partial_files(folder):
    """Deletes the temporary files that writers killed mid-write left in ``folder``
    (``*.partial-<pid>-<process start>`` of processes that no longer run); returns their names. For a
    folder no other host writes to."""
    if not os.path.isdir(folder):
        return []
    stale = []
    for name in sorted(os.listdir(folder)):
        match = _PARTIAL.fullmatch(name)
        if match and not process_running(int(match.group(1)), match.group(2)):
            os.remove(os.path.join(folder, name))
            stale.append(name)
    return stale
