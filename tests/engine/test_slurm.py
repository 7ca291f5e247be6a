"""SLURM cannot run here: these tests check the job that would be submitted (sbatch parameters) and
run the very same job callable through submitit's in-process debug executor, including a requeue."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import train_net  # noqa: E402
from cascades.engine.config import load_config  # noqa: E402
from cascades.engine.output_lock import LOCK_NAME  # noqa: E402
from cascades.engine.slurm import TrainingJob, build_executor  # noqa: E402
from cascades.engine.smoke import smoke_overrides  # noqa: E402

DEMO = os.path.join(ROOT, "configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py")


def test_sbatch_script(tmp_path, monkeypatch):
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # pretend srun exists
    args = train_net.parse_args(["--slurm", "--slurm-partition", "learnfair", "--slurm-nodes", "4",
                                 "--num-gpus", "8", "--slurm-time", "600"])
    executor = build_executor(args, str(tmp_path / "run"), cluster="slurm")
    script = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ["--nodes=4", "--gpus-per-node=8", "--ntasks-per-node=1", "--partition=learnfair",
                 "--time=600", "--signal=USR2@120", "--cpus-per-task=64", f"--output={tmp_path}/run/slurm/%j/"]:
        assert f"#SBATCH {line}" in script


def test_bad_cluster_arguments():
    with pytest.raises(SystemExit, match="--slurm-nodes must be at least 1"):
        train_net.parse_args(["--slurm", "--slurm-nodes", "0"])
    with pytest.raises(SystemExit, match=r"--machine-rank must be in \[0, --num-machines=2\)"):
        train_net.parse_args(["--num-machines", "2", "--machine-rank", "2"])


@pytest.fixture
def tiny_args(tmp_path):
    out = str(tmp_path / "run")

    def make(max_iter):
        opts = smoke_overrides(load_config(DEMO), out, max_iter=max_iter) + ["train.checkpointer.period=1"]
        return train_net.parse_args(["--config-file", DEMO, "--dist-url", "tcp://127.0.0.1:29517", *opts])

    # The debug executor trains in this process: one thread, as on a shared 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield out, make
    torch.set_num_threads(threads)


@pytest.mark.slow  # 15-35 s: trainings in subprocesses
def test_job_runs_and_requeue_resumes(tiny_args):
    out, make = tiny_args
    # A first job that stops after 2 of 3 iterations, like a preempted one...
    executor = build_executor(make(2), out, cluster="debug")
    executor.submit(TrainingJob(make(2))).result()
    assert os.path.isdir(os.path.join(out, "slurm"))
    # A preempted job is killed: it leaves its lock (here, from the node it ran on) and maybe a
    # half-written checkpoint.
    with open(os.path.join(out, LOCK_NAME), "w") as f:
        json.dump({"pid": 4242, "host": "node-17", "started": "2024-01-01T00:00:00", "command": "train_net.py"}, f)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    half_written = os.path.join(out, f"model_0000002.pth.partial-{int(ended.stdout)}")
    open(half_written, "wb").close()
    # ...and its requeued submission, which submitit builds with TrainingJob.checkpoint().
    requeued = TrainingJob(make(3)).checkpoint()
    assert requeued.function.args.resume
    executor.submit(requeued.function, *requeued.args, **requeued.kwargs).result()
    with open(os.path.join(out, "metrics.json")) as f:
        iterations = [json.loads(line)["iteration"] for line in f if '"total_loss"' in line]
    assert iterations == [0, 1, 2], "the requeued job continues at iteration 2"
    assert not os.path.exists(os.path.join(out, LOCK_NAME)) and not os.path.exists(half_written)
