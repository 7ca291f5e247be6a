"""One run per output folder: refused while the holder runs, taken over when it has ended."""

import json
import os
import socket
import subprocess
import sys

import pytest

from cascades.engine.atomic import process_start
from cascades.engine.output_lock import LOCK_NAME, OutputDirInUse, OutputDirLock


@pytest.fixture
def live_process():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def plant(folder, **holder):
    record = {"pid": 1, "host": socket.gethostname(), "process_start": None, "started": "2024-01-01T00:00:00",
              "command": "train_net.py --config-file x.py", **holder}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, LOCK_NAME), "w") as f:
        json.dump(record, f)
    return record


def holder_of(folder):
    with open(os.path.join(folder, LOCK_NAME)) as f:
        return json.load(f)


def test_lock_names_its_holder_and_is_released(tmp_path):
    with OutputDirLock(str(tmp_path / "out")).acquire() as lock:
        holder = holder_of(tmp_path / "out")
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["started"] and sys.argv[0] in holder["command"]
        assert lock.took_over is None
    assert not os.path.exists(tmp_path / "out" / LOCK_NAME)


@pytest.mark.parametrize("resume", [False, True])
def test_live_holder_is_refused_even_on_resume(tmp_path, live_process, resume):
    plant(tmp_path, pid=live_process.pid, process_start=process_start(live_process.pid))
    with pytest.raises(OutputDirInUse, match=f"is in use by another run: pid {live_process.pid} on "
                                             f"{socket.gethostname()}, started 2024-01-01T00:00:00 "
                                             r"\(command: train_net.py --config-file x.py\)"):
        OutputDirLock(str(tmp_path)).acquire(resume=resume)
    with pytest.raises(OutputDirInUse):
        OutputDirLock(str(tmp_path)).check(resume=resume)
    assert holder_of(tmp_path)["pid"] == live_process.pid, "the holder's lock is left alone"


def test_reused_pid_is_not_the_holder(tmp_path, live_process):
    # The holder's pid now belongs to another process, which started at another time.
    plant(tmp_path, pid=live_process.pid, process_start="1")
    lock = OutputDirLock(str(tmp_path)).acquire()
    assert "has ended" in lock.took_over
    lock.release()


@pytest.mark.parametrize("resume", [False, True])
def test_lock_of_an_ended_run_is_taken_over_with_one_message(tmp_path, resume):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    plant(tmp_path, pid=int(ended.stdout))
    lock = OutputDirLock(str(tmp_path)).acquire(resume=resume)
    assert lock.took_over == (f"took over {tmp_path} from the run that held it, pid {int(ended.stdout)} on "
                              f"{socket.gethostname()}, started 2024-01-01T00:00:00 (command: train_net.py "
                              "--config-file x.py), which has ended")
    assert holder_of(tmp_path)["pid"] == os.getpid()
    lock.release()


def test_lock_from_another_host_needs_resume(tmp_path):
    plant(tmp_path, host="node-17", pid=4242)
    with pytest.raises(OutputDirInUse, match="held by a run on another host: pid 4242 on node-17.*Pass --resume"):
        OutputDirLock(str(tmp_path)).acquire()
    # A requeued SLURM job resumes, possibly on another node.
    lock = OutputDirLock(str(tmp_path)).acquire(resume=True)
    assert "pid 4242 on node-17" in lock.took_over and "runs on another host (--resume)" in lock.took_over
    lock.release()


def test_damaged_lock_is_taken_over(tmp_path):
    (tmp_path / LOCK_NAME).write_text('{"pid": 12')
    lock = OutputDirLock(str(tmp_path)).acquire()
    assert "whose lock is unreadable" in lock.took_over
    lock.release()


def test_release_leaves_a_lock_taken_over_by_another_run(tmp_path):
    lock = OutputDirLock(str(tmp_path)).acquire()
    other = plant(tmp_path, host="node-17")
    lock.release()
    assert holder_of(tmp_path) == other


def test_two_runs_taking_over_at_once_leave_one_holder(tmp_path, monkeypatch, live_process):
    """Two runs find the same stale lock; the faster one puts its own in place before the slower one
    renames "the stale lock" away: the slower one puts the new lock back and is refused."""
    plant(tmp_path, host="node-17")
    faster = {"pid": live_process.pid, "host": socket.gethostname(), "process_start": process_start(live_process.pid),
              "started": "2024-01-02T00:00:00", "command": "train_net.py --resume"}
    real_rename = os.rename

    def rename_after_the_faster_run(src, dst):
        with open(src, "w") as f:
            json.dump(faster, f)
        monkeypatch.setattr(os, "rename", real_rename)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_the_faster_run)
    with pytest.raises(OutputDirInUse, match=f"in use by another run: pid {live_process.pid}"):
        OutputDirLock(str(tmp_path)).acquire(resume=True)
    assert holder_of(tmp_path) == faster


def test_a_dead_writers_reused_pid_does_not_keep_its_half_written_file(tmp_path, live_process):
    """Half-written files are named by their writer's pid and start; a process or a thread that took
    the pid since (ids share one number space, and kill(tid, 0) succeeds) is not the writer."""
    import threading

    from cascades.engine.atomic import AtomicFile, process_running, remove_stale_partial_files

    release, tids = threading.Event(), []
    thread = threading.Thread(target=lambda: (tids.append(threading.get_native_id()), release.wait()))
    thread.start()
    try:
        while not tids:
            pass
        own = f"{os.getpid()}-{process_start(os.getpid())}"
        other = f"{live_process.pid}-{process_start(live_process.pid)}"
        assert process_running(os.getpid(), process_start(os.getpid()))
        assert not process_running(tids[0], process_start(os.getpid()))
        names = {f"a.pth.partial-{tids[0]}-{process_start(os.getpid())}": "stale",  # its pid is a thread's now
                 f"b.pth.partial-{live_process.pid}-1": "stale",  # its pid is another process's now
                 f"c.pth.partial-{other}": "kept",  # its writer runs
                 f"d.pth.partial-{live_process.pid}": "kept",  # no start recorded: the pid runs
                 f"e.pth.partial-{own}": "kept"}
        for name in names:
            (tmp_path / name).write_bytes(b"PK")
        with AtomicFile(str(tmp_path / "f.pth"), "wb") as f:
            assert os.path.basename(f.name) == f"f.pth.partial-{own}"
            assert remove_stale_partial_files(str(tmp_path)) == [n for n, fate in names.items() if fate == "stale"]
        assert sorted(os.listdir(tmp_path)) == sorted([n for n, fate in names.items() if fate == "kept"] + ["f.pth"])
    finally:
        release.set()
        thread.join()
