"""train_net.py end to end, in subprocesses as a user runs it (tiny sizes, CPU)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from cascades.engine.atomic import process_start
from cascades.engine.config import load_config
from cascades.engine.output_lock import LOCK_NAME
from cascades.engine.smoke import smoke_overrides
from detectron2.config import instantiate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train_net as cli  # noqa: E402

DEMO = os.path.join(ROOT, "configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py")
# One thread per process: the tests share a 2-core machine, where oversubscription is ~10x slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_net(*args, env=None, timeout=400, **kwargs):
    """Runs train_net.py; ``.stdout`` holds its whole output (detectron2 logs to stdout)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "train_net.py"), *args], cwd=ROOT, env=env or ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, **kwargs)


def tiny(out, max_iter, *extra):
    return ["--config-file", DEMO, *smoke_overrides(load_config(DEMO), str(out), max_iter=max_iter), *extra]


def logged_iterations(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [r["iteration"] for r in map(json.loads, f) if "total_loss" in r]


@pytest.mark.slow  # 15-35 s: trainings in subprocesses
def test_ddp_two_processes_on_cpu_train_and_evaluate(tmp_path):
    result = train_net("--num-gpus", "2", "--dist-url", "auto", *tiny(tmp_path, 3))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "World size: 2" in result.stdout
    assert logged_iterations(tmp_path) == [0, 1, 2]
    with open(tmp_path / "eval_results.json") as f:
        results = json.load(f)
    assert {"bbox", "segm"} <= set(results) and "AP" in results["segm"]
    assert torch.load(tmp_path / "model_final.pth", weights_only=False)["iteration"] == 2
    # Only the main process took the output folder's lock (another would have been refused), and released it.
    assert not (tmp_path / LOCK_NAME).exists()


def test_ddp_run_refused_by_the_main_process_ends_every_process(tmp_path):
    """The main process's refusal reaches the other processes, which end too, without a traceback."""
    (tmp_path / LOCK_NAME).write_text(json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid()),
        "started": "2024-01-01T00:00:00", "command": "pytest"}))
    # train_net.py's own check before the processes start is skipped, as if the lock came just after it.
    script = ("import sys, train_net; from cascades.engine.output_lock import OutputDirLock; "
              "OutputDirLock.check = lambda self, resume=False: None; train_net.main(sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", script, "--num-gpus", "2", "--dist-url", "auto", *tiny(tmp_path, 3)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=400)
    assert result.returncode != 0
    assert result.stdout.count(f"is in use by another run: pid {os.getpid()}") == 1, result.stdout[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
    assert not (tmp_path / "metrics.json").exists()


def test_killed_run_resumes_where_it_stopped(tmp_path):
    max_iter = 8
    args = tiny(tmp_path, max_iter, "train.checkpointer.period=1")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_net.py"), *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "model_0000003.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    # A second run into the same folder is refused while the first runs, even to resume it.
    for extra in ([], ["--resume"]):
        with pytest.raises(SystemExit, match=f"is in use by another run: pid {proc.pid} on {socket.gethostname()}"):
            cli.main([*extra, *args])
    writer = f"{proc.pid}-{process_start(proc.pid)}"  # how its half-written files are named
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, possibly in the middle of a save
    proc.wait()
    assert not (tmp_path / "model_final.pth").exists(), "the run should have been killed before its end"
    with open(tmp_path / "last_checkpoint") as f:
        last = torch.load(tmp_path / f.read().strip(), weights_only=False)
    assert last["iteration"] >= 3 and last["trainer"]["optimizer"]["state"], "training state is saved"
    half_written = tmp_path / f"model_0000099.pth.partial-{writer}"  # as if killed in a save
    half_written.write_bytes(b"PK")

    result = train_net("--resume", *args)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Starting training from iteration {last['iteration'] + 1}" in result.stdout
    assert f"took over {tmp_path} from the run that held it, pid {proc.pid} on" in result.stdout
    # The kill may also have cut a save of the run's own short: its half-written files are listed too.
    removed = re.search(f"removed what killed runs left half-written in {re.escape(str(tmp_path))}: (.*)",
                        result.stdout)
    assert removed and half_written.name in removed.group(1).split(", "), result.stdout[-3000:]
    assert not list(tmp_path.glob("*.partial-*")) and not (tmp_path / LOCK_NAME).exists()
    assert logged_iterations(tmp_path) == list(range(max_iter)), "no iteration is lost or logged twice"
    # The LR schedule continues: each logged LR is the schedule's value at that iteration.
    cfg = load_config(DEMO, [f"train.max_iter={max_iter}"])
    schedule = instantiate(cfg.lr_multiplier)
    with open(tmp_path / "metrics.json") as f:
        for record in map(json.loads, f):
            if "lr" in record:
                expected = cfg.optimizer.lr * schedule(record["iteration"] / max_iter)
                assert record["lr"] == pytest.approx(expected), record["iteration"]


def test_diverged_run_stops_with_one_message_and_resumes_with_a_lower_lr(tmp_path):
    base = tiny(tmp_path, 2, "train.checkpointer.period=1", "train.seed=1")
    assert train_net(*base).returncode == 0
    lr = load_config(DEMO).optimizer.lr
    # A huge LR from iteration 2 on: the first update breaks the model (no checkpoint in between).
    diverged = train_net("--resume", *base, "train.max_iter=5", "train.checkpointer.period=100", "optimizer.lr=1e6")
    assert diverged.returncode != 0
    errors = [line for line in diverged.stdout.splitlines() if line.startswith(("train_net.py: error", "ERROR"))]
    assert len(errors) == 1 and "Traceback" not in diverged.stdout, diverged.stdout[-3000:]
    assert "Start inference" not in diverged.stdout, "a run that failed in its last iteration is not evaluated"
    message = re.fullmatch(r"train_net.py: error: training diverged at iteration (\d+): (.+)\. The last checkpoint, "
                           r"(\S+), is intact: continue it with a lower learning rate, e.g. --resume "
                           r"optimizer.lr=250000", errors[0])
    assert message and int(message.group(1)) >= 3, errors[0]
    assert "non-finite" in message.group(2)
    assert message.group(3) == str(tmp_path / "model_final.pth")
    # The config's LR applied over the checkpoint's (torch's load_state_dict restores the latter).
    assert f"instead of the checkpoint's: lr {lr} -> 1000000.0" in diverged.stdout

    resumed = train_net("--resume", *base, "train.max_iter=5", "train.checkpointer.period=100", f"optimizer.lr={lr / 2}")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert "Starting training from iteration 2" in resumed.stdout
    assert f"instead of the checkpoint's: lr {lr} -> {lr / 2}" in resumed.stdout
    assert logged_iterations(tmp_path) == list(range(5))
    schedule = instantiate(load_config(DEMO, ["train.max_iter=5"]).lr_multiplier)
    with open(tmp_path / "metrics.json") as f:
        lrs = {r["iteration"]: r["lr"] for r in map(json.loads, f) if "lr" in r}
    assert lrs[4] == pytest.approx(lr / 2 * schedule(4 / 5))


BAD_INPUTS = {
    "missing config": (["--config-file", "configs/Nope/missing.py"], "'configs/Nope/missing.py' does not exist"),
    "unknown override key": (["train.max_itr=5"], "no key 'train.max_itr'; did you mean train.max_iter"),
    "missing dataset folder": (["dataloader.train.dataset.names=coco_2017_train"],
                               "Dataset 'coco_2017_train': its json_file"),
    "checkpoint of another model": (["--eval-only", "train.init_checkpoint={other}"], "does not fit this model"),
    "eval without weights": (["--eval-only"], "--eval-only needs trained weights"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_message(case, tmp_path):
    args, message = BAD_INPUTS[case]
    other = tmp_path / "other.pth"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    env = {**ENV, "DETECTRON2_DATASETS": str(tmp_path)}  # COCO is not there
    result = train_net(*[a.format(other=other) for a in args], f"train.output_dir={tmp_path}/out", env=env)
    assert result.returncode != 0
    assert message in result.stdout
    assert "Traceback" not in result.stdout, result.stdout[-3000:]


def _damaged_checkpoints(folder):
    good = folder / "good.pth"
    torch.save({"model": {"fc.weight": torch.zeros(64, 64)}}, good)
    files = {"empty.pth": b"", "text.pth": b"weights: none\n", "truncated.pth": good.read_bytes()[:3000]}
    for name, data in files.items():
        (folder / name).write_bytes(data)


EARLY_ERRORS = {
    "max_iter not a number": (["train.max_iter=abc"], "train.max_iter must be an integer >= 1; got 'abc'"),
    "negative max_iter": (["train.max_iter=-5"], "train.max_iter must be an integer >= 1; got -5"),
    "checkpoint period 0": (["train.checkpointer.period=0"], "train.checkpointer.period must be an integer >= 1; got 0"),
    "empty batch": (["dataloader.train.total_batch_size=0"], "total_batch_size must be an integer >= 1; got 0"),
    "batch not divisible": (["--num-gpus", "2", "dataloader.train.total_batch_size=3"], "divisible by the number of"),
    "schedule cannot be built": (["lr_multiplier.warmup_iter=-1"], "warmup_iter must be a non-negative integer"),
    "empty checkpoint": (["train.init_checkpoint={folder}/empty.pth"], "empty.pth' is an empty file"),
    "text checkpoint": (["train.init_checkpoint={folder}/text.pth"], "text.pth' (14 bytes) is truncated or not a"),
    "truncated checkpoint": (["train.init_checkpoint={folder}/truncated.pth"], "truncated.pth' (3000 bytes) is trunc"),
    "truncated checkpoint to evaluate": (["--eval-only", "train.init_checkpoint={folder}/truncated.pth"],
                                         "truncated.pth' (3000 bytes) is truncated or not a checkpoint"),
    "checkpoint is a folder": (["train.init_checkpoint={folder}"], "is a folder, not a checkpoint file"),
}


@pytest.mark.parametrize("case", sorted(EARLY_ERRORS))
def test_bad_input_fails_in_one_line_before_anything_starts(case, tmp_path):
    _damaged_checkpoints(tmp_path)
    args, message = EARLY_ERRORS[case]
    with pytest.raises(SystemExit) as e:
        cli.main(["--config-file", DEMO, *[a.format(folder=tmp_path) for a in args],
                        f"train.output_dir={tmp_path}/out"])
    assert str(e.value).startswith("train_net.py: error: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unreadable_training_image_is_named(tmp_path):
    """balloon with its training photos truncated: the run stops naming the photo, from a loader worker."""
    source = os.path.join(os.environ.get("DETECTRON2_DATASETS", ""), "balloon")
    if not os.path.isfile(os.path.join(source, "train.json")):
        pytest.skip(f"needs the balloon dataset under $DETECTRON2_DATASETS (not in {source!r})")
    balloon = tmp_path / "datasets" / "balloon"
    (balloon / "train").mkdir(parents=True)
    for name in ("train.json", "val.json", "val"):
        os.symlink(os.path.join(source, name), balloon / name)
    for name in os.listdir(os.path.join(source, "train")):
        with open(os.path.join(source, "train", name), "rb") as f:
            (balloon / "train" / name).write_bytes(f.read(2000))
    out = tmp_path / "out"
    result = train_net(*tiny(out, 2), "dataloader.train.dataset.names=balloon_train",
                       "dataloader.train.mapper.instance_mask_format=polygon", "dataloader.train.num_workers=1",
                       env={**ENV, "DETECTRON2_DATASETS": str(tmp_path / "datasets")})
    assert result.returncode != 0
    assert re.search(rf"train_net.py: error: training image '{balloon}/train/[^']+\.jpg' cannot be read: OSError: .+",
                     result.stdout), result.stdout[-3000:]
    assert "Traceback" not in result.stdout, result.stdout[-3000:]
