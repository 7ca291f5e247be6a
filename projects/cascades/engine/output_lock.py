"""One run per output folder: a lock file naming its holder, so that a second run cannot mix its
checkpoints, metrics and config with those of a run still writing there."""

import contextlib
import datetime
import json
import os
import shlex
import socket
import sys

from .atomic import process_running, process_start

__all__ = ["LOCK_NAME", "OutputDirInUse", "OutputDirLock"]

LOCK_NAME = "train_net.lock"


class OutputDirInUse(ValueError):
    """Another live run holds the output folder."""


def _alive(holder):
    """True or False for a holder on this host; None (unknown) for one on another host."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    return process_running(pid, holder.get("process_start"))


def _describe(holder):
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')} "
            f"(command: {holder.get('command')})")


class OutputDirLock:
    """``<output_dir>/train_net.lock``, holding the pid, host, start time and command of its run.

    :meth:`acquire` refuses (:class:`OutputDirInUse`) while the holder runs. It takes over, with one
    message in :attr:`took_over`, a lock whose holder has ended (killed, crashed, a SLURM job requeued
    on this host), and, with ``resume``, one whose holder runs on another host, where this process
    cannot see it (a requeued SLURM job may start on another node). A lock is released when its run
    ends normally or by an exception; a kill leaves it for the next run to take over."""

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, LOCK_NAME)
        self.took_over = None
        self._record = None

    def acquire(self, resume=False):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid()),
                  "started": datetime.datetime.now().isoformat(timespec="seconds"),
                  "command": shlex.join([sys.executable, *sys.argv])}
        while not self._create(record):
            holder = self._read()
            alive = self._check_holder(holder, resume)
            # Renaming the stale lock away is atomic: of two runs taking over at once, one moves it. The
            # other may then move the winner's new lock instead: it puts that back and looks again.
            stale = f"{self.path}.stale-{os.getpid()}"
            try:
                os.rename(self.path, stale)
            except FileNotFoundError:
                continue
            moved = self._read(stale)
            if moved != holder:
                with contextlib.suppress(FileExistsError):
                    os.link(stale, self.path)
            os.remove(stale)
            if moved != holder:
                continue
            self.took_over = (f"took over {os.path.dirname(self.path)} from the run that held it, "
                              + (f"{_describe(holder)}, which " if holder else "whose lock is unreadable and which ")
                              + ("has ended" if alive is False else "runs on another host (--resume)"))
        self._record = record
        return self

    def check(self, resume=False):
        """Raises :class:`OutputDirInUse` where :meth:`acquire` would, without taking the lock."""
        if os.path.exists(self.path):
            self._check_holder(self._read(), resume)

    def _check_holder(self, holder, resume):
        alive = _alive(holder) if holder else False
        if alive or (alive is None and not resume):
            raise OutputDirInUse(self._refusal(holder, alive))
        return alive

    def release(self):
        if self._record is not None and self._read() == self._record:
            os.remove(self.path)
        self._record = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def _create(self, record):
        """Creates the lock with its content in one step (a hard link of a written file), so that no
        other run ever reads it half-written; False when it exists."""
        written = os.path.join(os.path.dirname(self.path), f".{LOCK_NAME}.{os.getpid()}.tmp")
        with open(written, "w") as f:
            json.dump(record, f)
        try:
            os.link(written, self.path)
        except FileExistsError:
            return False
        finally:
            os.remove(written)
        return True

    def _read(self, path=None):
        """The holder's record; None for an unreadable one (a damaged file)."""
        try:
            with open(path or self.path) as f:
                holder = json.load(f)
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _refusal(self, holder, alive):
        folder = os.path.dirname(self.path)
        if alive:
            return (f"train.output_dir {folder!r} is in use by another run: {_describe(holder)}. Wait for it "
                    "to end or stop it, or pass another train.output_dir")
        return (f"train.output_dir {folder!r} is held by a run on another host: {_describe(holder)}, which "
                f"this process cannot see. Pass --resume to continue that run here, or delete {self.path} "
                "if it has ended and you want to start afresh")
