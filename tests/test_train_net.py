"""train_net.py end to end, in subprocesses as a user runs it (tiny sizes, CPU)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cascades.engine.config import load_config
from cascades.engine.smoke import smoke_overrides
from detectron2.config import instantiate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def test_ddp_two_processes_on_cpu_train_and_evaluate(tmp_path):
    result = train_net("--num-gpus", "2", "--dist-url", "auto", *tiny(tmp_path, 3))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "World size: 2" in result.stdout
    assert logged_iterations(tmp_path) == [0, 1, 2]
    with open(tmp_path / "eval_results.json") as f:
        results = json.load(f)
    assert {"bbox", "segm"} <= set(results) and "AP" in results["segm"]
    assert torch.load(tmp_path / "model_final.pth", weights_only=False)["iteration"] == 2


def test_killed_run_resumes_where_it_stopped(tmp_path):
    max_iter = 8
    args = tiny(tmp_path, max_iter, "train.checkpointer.period=1")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_net.py"), *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (tmp_path / "model_0000003.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, possibly in the middle of a save
    proc.wait()
    assert not (tmp_path / "model_final.pth").exists(), "the run should have been killed before its end"
    with open(tmp_path / "last_checkpoint") as f:
        last = torch.load(tmp_path / f.read().strip(), weights_only=False)
    assert last["iteration"] >= 3 and last["trainer"]["optimizer"]["state"], "training state is saved"

    result = train_net("--resume", *args)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"Starting training from iteration {last['iteration'] + 1}" in result.stdout
    assert sorted(set(logged_iterations(tmp_path))) == list(range(max_iter)), "no iteration is lost"
    # The LR schedule continues: each logged LR is the schedule's value at that iteration.
    cfg = load_config(DEMO, [f"train.max_iter={max_iter}"])
    schedule = instantiate(cfg.lr_multiplier)
    with open(tmp_path / "metrics.json") as f:
        for record in map(json.loads, f):
            if "lr" in record:
                expected = cfg.optimizer.lr * schedule(record["iteration"] / max_iter)
                assert record["lr"] == pytest.approx(expected), record["iteration"]


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
