"""Training on SLURM clusters through submitit: one task per node, which runs detectron2's launch()
with one process per GPU; preemption and time-outs requeue the job, which resumes from the last
checkpoint in train.output_dir."""

import copy
import os
from urllib.parse import urlparse

import submitit

from detectron2.engine import launch

from .trainer import run

__all__ = ["TrainingJob", "build_executor"]


class TrainingJob:
    """The callable submitit runs on every node of the job."""

    def __init__(self, args):
        self.args = args

    def __call__(self):
        env = submitit.JobEnvironment()
        args = copy.copy(self.args)
        args.num_machines = env.num_nodes
        args.machine_rank = env.node
        # Every node reaches the first node of the allocation on the port of --dist-url.
        args.dist_url = f"tcp://{env.hostnames[0]}:{urlparse(self.args.dist_url).port}"
        launch(run, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(args,))

    def checkpoint(self):
        """Called by submitit when the job is preempted or reaches its time limit: the requeued job
        resumes from the last checkpoint."""
        args = copy.copy(self.args)
        args.resume = True
        return submitit.helpers.DelayedSubmission(TrainingJob(args))


def build_executor(args, output_dir, cluster=None):
    """A submitit executor for ``args`` (train_net.py's arguments): ``--slurm-nodes`` nodes with
    ``--num-gpus`` GPUs each, ``--slurm-partition``, ``--slurm-time`` minutes. Logs of job J go to
    ``<output_dir>/slurm/J``. ``cluster`` is submitit's: None picks SLURM when available, "local" and
    "debug" run on this machine."""
    executor = submitit.AutoExecutor(folder=os.path.join(output_dir, "slurm", "%j"), cluster=cluster)
    executor.update_parameters(
        name=os.path.basename(os.path.normpath(output_dir)) or "cascades",
        nodes=args.slurm_nodes,
        tasks_per_node=1,
        gpus_per_node=args.num_gpus,
        cpus_per_task=args.slurm_cpus_per_gpu * max(args.num_gpus, 1),
        timeout_min=args.slurm_time,
        slurm_partition=args.slurm_partition,
        # Time between SLURM's warning signal and the kill, for submitit to requeue the job.
        slurm_signal_delay_s=120,
    )
    return executor
