"""Files that appear complete or not at all: a kill mid-write leaves the previous version intact."""

import os
import re

from detectron2.utils.file_io import PathManager

__all__ = ["AtomicFile", "AtomicPathManager", "process_running", "remove_stale_partial_files"]

_PARTIAL = re.compile(r".+\.partial-(\d+)")


class AtomicFile:
    """``with AtomicFile(path, "wb") as f``: writes go to a temporary file beside ``path``, which
    replaces ``path`` (after fsync) only when the block exits without an exception."""

    def __init__(self, path, mode="w"):
        if "w" not in mode:
            raise ValueError(f"AtomicFile is for writing; got mode={mode!r}")
        self._path = path
        self._tmp = f"{path}.partial-{os.getpid()}"  # see remove_stale_partial_files
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


def process_running(pid):
    """Whether a process ``pid`` exists on this host. Threads take their ids from the same numbers, and
    ``kill(tid, 0)`` succeeds for them: on Linux an id whose task is a thread of another process is not a
    running process (a dead writer's pid, reused by a thread, would otherwise keep its files forever)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) == pid
    except OSError:  # no /proc (not Linux), or the task ended meanwhile
        pass
    return True


def remove_stale_partial_files(folder):
    """Deletes the temporary files that writers killed mid-write left in ``folder`` (``*.partial-<pid>``
    of processes that no longer run); returns their names. For a folder no other host writes to."""
    if not os.path.isdir(folder):
        return []
    stale = []
    for name in sorted(os.listdir(folder)):
        match = _PARTIAL.fullmatch(name)
        if match and int(match.group(1)) != os.getpid() and not process_running(int(match.group(1))):
            os.remove(os.path.join(folder, name))
            stale.append(name)
    return stale
