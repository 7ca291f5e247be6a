#!/usr/bin/env python
"""
Runs a study: a grid of trainings of train_net.py (config, overrides, seed), each evaluated on its
config's held-out split at the end, and reports every row's mean +- std and 95% interval over its seeds.

    python tools/study.py issue10                  # what is not recorded yet, then the table and the plot
    python tools/study.py issue10 -j 2             # two trainings at a time (each with one thread)
    python tools/study.py issue10 --only 'balloon-*' --seeds 1   # some rows (names or patterns), some seeds
    python tools/study.py issue12 --list           # rows, seeds and what is recorded; nothing runs
    python tools/study.py issue12 --report         # the table and the plot from the records only
    python tools/study.py my_grid.json             # a study given as a JSON file (see load_study)

The studies are defined in tools/study_grids.py. Every finished run (evaluated, or stopped by a
non-finite loss) is recorded in docs/studies/<study>/<row>__seed<k>.json: config, overrides, seed, git
commit, iterations, CPU and wall time (and the machine's load), final losses, AP and AP50 (box, mask;
mAP^r when the evaluator gives it), whether and where it diverged. A re-run skips recorded runs, and takes a run recorded in another study
with the same config, overrides and seed from there. A run's checkpoints and logs go to
output/studies/<study>/<row>__seed<k>/ (outside git); a run killed midway resumes from its last checkpoint.
The records are all a new machine needs: commit them. The table (table.md) and the plot (ap.png) are
written beside the records after every run.

Every row is checked before any training starts: its config loads with its overrides (unknown keys are
errors), its datasets are there and its model builds; a bad row stops the tool with one line.
"""

import argparse
import concurrent.futures
import datetime
import fcntl
import fnmatch
import glob
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from study_grids import STUDIES, Row, Section, Study  # noqa: E402

# Import-time deprecation notices of torch and detectron2's dependencies would bury the one-line errors.
warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

RECORDS = os.path.join(ROOT, "docs", "studies")
OUTPUTS = os.path.join(ROOT, "output", "studies")
# One intra-op thread per training: on a shared machine oversubscribed threads slow training ~10x.
ENV_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# How detectron2 (and our trainer) report a non-finite loss or the boxes it produces.
_DIVERGENCE = re.compile(r"FloatingPointError|infinite or NaN|non-finite|not finite|diverged")
_ITERATION = re.compile(r"iteration[ =]+(\d+)")


class StudyError(Exception):
    """Bad input: the study, a row or an option; reported in one line before anything runs."""


@dataclass(frozen=True)
class Run:
    study: str
    row: Row
    seed: int

    @property
    def name(self) -> str:
        return f"{self.row.name}__seed{self.seed}"

    def record_path(self, records_root: str) -> str:
        return os.path.join(records_root, self.study, self.name + ".json")

    def output_dir(self, outputs_root: str) -> str:
        return os.path.join(outputs_root, self.study, self.name)

    def overrides(self, output_dir: str) -> List[str]:
        return [*self.row.overrides, f"train.seed={self.seed}", f"train.output_dir={output_dir}"]


# ---------------------------------------------------------------------------------------------------
# Studies and their validation


def load_study(name_or_path: str) -> Study:
    """A study of tools/study_grids.py by name, or a JSON file:
    ``{"name": ..., "sections": [{"title": ..., "baseline": ..., "rows": [{"name", "config", "overrides",
    "seeds", "label"}]}]}`` (baseline, overrides, seeds and label optional)."""
    if name_or_path.endswith(".json"):
        try:
            with open(name_or_path) as f:
                spec = json.load(f)
            sections = tuple(
                Section(s["title"], baseline=s.get("baseline"), rows=tuple(
                    Row(r["name"], r["config"], tuple(r.get("overrides", ())), tuple(r.get("seeds", (1, 2, 3))),
                        r.get("label", "")) for r in s["rows"]))
                for s in spec["sections"])
            return Study(spec["name"], sections, spec.get("description", ""))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise StudyError(f"study file {name_or_path!r}: {type(e).__name__}: {e}") from None
        except ValueError as e:
            raise StudyError(str(e)) from None
    if name_or_path not in STUDIES:
        raise StudyError(f"unknown study {name_or_path!r}; studies: {', '.join(sorted(STUDIES))} "
                         "(or a .json file)")
    return STUDIES[name_or_path]


def check_row(row: Row, output_dir: str):
    """Loads the row's config with its overrides, checks its datasets and builds its model; raises
    StudyError naming the row and the problem."""
    from cascades.engine.config import check_datasets, load_config
    from detectron2.config import instantiate

    config = os.path.join(ROOT, row.config)
    if not os.path.isfile(config):
        raise StudyError(f"row {row.name!r}: config {row.config!r} does not exist")
    if not row.seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in row.seeds):
        raise StudyError(f"row {row.name!r}: seeds must be non-negative integers; got {list(row.seeds)}")
    try:
        cfg = load_config(config, [*row.overrides, "train.seed=0", f"train.output_dir={output_dir}"])
        check_datasets(cfg)
        instantiate(cfg.model)
    except Exception as e:  # noqa: BLE001  any failure to build is the row's problem, told in one line
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        raise StudyError(f"row {row.name!r} ({row.config}): {type(e).__name__}: {message}") from None
    if "evaluator" not in cfg.dataloader:
        raise StudyError(f"row {row.name!r} ({row.config}): the config has no dataloader.evaluator, so its "
                         "runs cannot be evaluated")
    return cfg


# ---------------------------------------------------------------------------------------------------
# Records


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def write_json_atomic(path: str, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def find_reusable(run: Run, records_root: str) -> Optional[str]:
    """A record of another study of the same config, overrides and seed."""
    for path in sorted(glob.glob(os.path.join(records_root, "*", "*.json"))):
        if os.path.dirname(path) == os.path.join(records_root, run.study):
            continue
        try:
            rec = read_json(path)
        except (OSError, json.JSONDecodeError):
            continue
        if (rec.get("config") == run.row.config and rec.get("overrides") == list(run.row.overrides)
                and rec.get("seed") == run.seed and "reused_from" not in rec):
            return path
    return None


def git_state():
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or None
    dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "projects", "configs", "train_net.py"))
    return commit, dirty


# ---------------------------------------------------------------------------------------------------
# Running one training


def _metrics(output_dir: str) -> List[dict]:
    path = os.path.join(output_dir, "metrics.json")
    rows = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # the line being written when a run was killed
                    pass
    return [r for r in rows if "total_loss" in r]


def _last_checkpoint_iteration(output_dir: str) -> Optional[int]:
    """The iteration of the checkpoint ``last_checkpoint`` names; None without one."""
    import torch

    path = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        checkpoint = os.path.join(output_dir, f.read().strip())
    if not os.path.isfile(checkpoint):
        return None
    return torch.load(checkpoint, map_location="cpu", weights_only=False).get("iteration")


def _eval_summary(results: dict) -> dict:
    """The tasks' summary numbers, without the per-class APs."""
    return {task: {k: v for k, v in values.items() if not k.startswith("AP-")} if isinstance(values, dict) else values
            for task, values in results.items()}


def _speed(log_path: str) -> Optional[float]:
    """Seconds per training iteration, as detectron2's IterationTimer reported at the end of the last
    training attempt in the run's log."""
    with open(log_path) as f:
        m = re.findall(r"Overall training speed: \d+ iterations in \S+ \(([0-9.]+) s / it\)", f.read())
    return float(m[-1]) if m else None


def _divergence(log_tail: str, metrics: List[dict]) -> Optional[dict]:
    lines = [ln for ln in log_tail.splitlines() if _DIVERGENCE.search(ln)]
    if not lines:
        return None
    at = None
    for line in lines:
        m = _ITERATION.search(line)
        if m:
            at = int(m.group(1))
    if at is None:  # the message does not say: the first iteration after the last logged one
        at = metrics[-1]["iteration"] + 1 if metrics else 0
    return {"iteration": at, "message": lines[-1].strip()[:300]}


class Runner:
    def __init__(self, study: Study, records_root: str, outputs_root: str, progress_s: float,
                 python: str = sys.executable):
        self.study, self.records_root, self.outputs_root = study, records_root, outputs_root
        self.progress_s, self.python = progress_s, python
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def say(self, line: str) -> None:
        with self.lock:
            print(f"[{datetime.datetime.now():%H:%M:%S}] {line}", flush=True)

    def _train_net(self, run: Run, out: str, extra: List[str], lock_fd: int) -> subprocess.Popen:
        cmd = [self.python, os.path.join(ROOT, "train_net.py"), "--config-file", os.path.join(ROOT, run.row.config),
               *extra, *run.overrides(out)]
        with open(os.path.join(out, "study_stdout.log"), "a") as log:
            log.write(f"\n=== {datetime.datetime.now().isoformat(timespec='seconds')}: {' '.join(cmd)}\n")
            log.flush()
            # The training inherits the run's lock: a study.py killed before its training cannot start a
            # second one in the same folder while the first is still running.
            return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **ENV_THREADS}, stdout=log,
                                    stderr=subprocess.STDOUT, text=True, pass_fds=(lock_fd,))

    def _wait(self, run: Run, proc: subprocess.Popen, out: str, state: dict, max_iter: int) -> int:
        """Waits for the training, printing progress, adding its wall and CPU time to the run's state file."""
        state_path = os.path.join(out, "study_state.json")
        start = time.time()
        before, cpu_before = state.get("wall_s", 0.0), state.get("cpu_s", 0.0)
        last_print, first_iteration = start, None
        while proc.poll() is None:
            time.sleep(1.0)
            now = time.time()
            state["wall_s"] = before + now - start
            # CPU time as well: on a shared machine it is what the run would take on an idle core.
            cpu = _cpu_seconds(proc.pid)
            if cpu is not None:
                state["cpu_s"] = cpu_before + cpu
            # The machine's load while it ran: wall times on a shared machine mean little without it.
            state["load_sum"] = state.get("load_sum", 0.0) + os.getloadavg()[0]
            state["load_n"] = state.get("load_n", 0) + 1
            write_json_atomic(state_path, state)
            if now - last_print >= self.progress_s:
                last_print = now
                metrics = _metrics(out)
                where = "starting"
                if metrics:
                    iteration = metrics[-1]["iteration"] + 1
                    where = f"iteration {iteration}/{max_iter}, total_loss {metrics[-1]['total_loss']:.3f}"
                    if first_iteration is None:
                        first_iteration, first_at = iteration, now
                    elif iteration > first_iteration:  # the rate of this process's own iterations
                        rate = (iteration - first_iteration) / (now - first_at)
                        where += f", about {_duration((max_iter - iteration) / rate)} left"
                self.say(f"{run.name}: {where}, {_duration(state['wall_s'])}")
        state["wall_s"] = before + time.time() - start
        write_json_atomic(state_path, state)
        return proc.returncode

    def run(self, run: Run, max_iter: int) -> Optional[dict]:
        """Trains and evaluates ``run`` (resuming its last checkpoint) and records it; None when the
        training failed for another reason than a non-finite loss (the run stays unrecorded)."""
        out = run.output_dir(self.outputs_root)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, ".lock"), "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"{run.name}: another study.py is running it, skipped")
                return None
            return self._run_locked(run, out, max_iter, lock.fileno())

    def _run_locked(self, run: Run, out: str, max_iter: int, lock_fd: int) -> Optional[dict]:
        state_path = os.path.join(out, "study_state.json")
        state = read_json(state_path) if os.path.isfile(state_path) else {}
        resume_from = _last_checkpoint_iteration(out)
        if resume_from is None:
            state = {}
        state.setdefault("attempts", 0)
        state["attempts"] += 1
        commit, dirty = git_state()
        if "git_commit" not in state:  # the code the training started with
            state["git_commit"], state["git_dirty"] = commit, dirty
        elif commit != state["git_commit"] and commit not in state.setdefault("resumed_at_commits", []):
            state["resumed_at_commits"].append(commit)
        log_path = os.path.join(out, "study_stdout.log")
        log_start = os.path.getsize(log_path) if os.path.isfile(log_path) else 0
        what = " ".join([run.row.config, *run.row.overrides])
        self.say(f"{run.name}: {'starting' if resume_from is None else f'resuming after iteration {resume_from}'} "
                 f"({what})")
        rc = self._wait(run, self._train_net(run, out, ["--resume"] if resume_from is not None else [], lock_fd),
                        out, state, max_iter)
        with open(log_path) as f:
            f.seek(log_start)
            log_tail = f.read()[-20000:]
        metrics = _metrics(out)
        final = os.path.join(out, "model_final.pth")
        results_path = os.path.join(out, "eval_results.json")
        diverged = _divergence(log_tail, metrics) if rc != 0 else None
        if rc != 0 and diverged is None:
            if self.stopping.is_set():
                return None
            self.say(f"{run.name}: train_net.py failed (exit status {rc}); not recorded. The end of its log "
                     f"({log_path}):\n" + "\n".join(log_tail.splitlines()[-15:]))
            return None
        if rc == 0 and os.path.isfile(final) and (not os.path.isfile(results_path)
                                                  or os.path.getmtime(results_path) < os.path.getmtime(final)):
            # The run had finished training before it was stopped, but not its evaluation.
            self.say(f"{run.name}: evaluating model_final.pth")
            rc = self._wait(run, self._train_net(run, out, ["--eval-only", f"train.init_checkpoint={final}"], lock_fd),
                            out, state, max_iter)
            if rc != 0:
                self.say(f"{run.name}: the evaluation failed (exit status {rc}); see {log_path}")
                return None
        record = {
            "study": run.study, "row": run.row.name, "seed": run.seed, "config": run.row.config,
            "overrides": list(run.row.overrides), "git_commit": state["git_commit"], "git_dirty": state["git_dirty"],
            **({"resumed_at_commits": state["resumed_at_commits"]} if state.get("resumed_at_commits") else {}),
            "max_iter": max_iter, "iterations": metrics[-1]["iteration"] + 1 if metrics else 0,
            "wall_time_s": round(state["wall_s"], 1), "attempts": state["attempts"],
            "cpu_time_s": round(state["cpu_s"], 1) if "cpu_s" in state else None,
            "s_per_iter": _speed(log_path),
            "mean_load_1min": round(state["load_sum"] / state["load_n"], 2) if state.get("load_n") else None,
            "final_losses": {k: v for k, v in metrics[-1].items() if k.startswith("loss") or k == "total_loss"}
            if metrics else {},
            "diverged": diverged is not None,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {ENV_THREADS['OMP_NUM_THREADS']} thread",
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        if diverged is not None:
            record["diverged_at"], record["error"] = diverged["iteration"], diverged["message"]
            record["iterations"] = diverged["iteration"]
        else:
            record["metrics"] = _eval_summary(read_json(results_path))
        write_json_atomic(run.record_path(self.records_root), record)
        return record


def _cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc); None elsewhere or once it ended."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# ---------------------------------------------------------------------------------------------------
# Statistics, table and plot

# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom (the normal 1.96 beyond).
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def summarize(values: List[float]) -> dict:
    """Mean, sample standard deviation and the half-width of the 95% interval of the mean."""
    n = len(values)
    if n == 0:
        return {"n": 0}
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci95": None}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return {"n": n, "mean": mean, "std": std, "ci95": t * std / math.sqrt(n)}


def compare(a: dict, b: dict) -> str:
    """``a`` - ``b`` in AP, "resolved" only when the two 95% intervals are disjoint."""
    if a.get("n", 0) == 0 or b.get("n", 0) == 0:
        return "-"
    diff = a["mean"] - b["mean"]
    if a["ci95"] is None or b["ci95"] is None:
        return f"{diff:+.1f} (one seed: not resolved)"
    disjoint = a["mean"] - a["ci95"] > b["mean"] + b["ci95"] or a["mean"] + a["ci95"] < b["mean"] - b["ci95"]
    return f"{diff:+.1f} ({'resolved' if disjoint else 'not resolved'})"


def _metric(rec: dict, task: str, key: str) -> Optional[float]:
    value = rec.get("metrics", {}).get(task, {}).get(key)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def row_stats(records: List[dict]) -> dict:
    stats = {}
    for task in ("segm", "bbox"):
        for key in ("AP", "AP50"):
            values = [v for v in (_metric(r, task, key) for r in records if not r["diverged"]) if v is not None]
            stats[f"{task}/{key}"] = summarize(values)
    sds = [r["metrics"]["sds"] for r in records if not r["diverged"] and "sds" in r.get("metrics", {})]
    for key in sorted({k for s in sds for k in s}):
        stats[f"sds/{key}"] = summarize([s[key] for s in sds if isinstance(s.get(key), (int, float))])
    return stats


def _fmt(s: dict) -> str:
    if s.get("n", 0) == 0:
        return "-"
    return f"{s['mean']:.1f}" if s["std"] is None else f"{s['mean']:.1f} +- {s['std']:.1f}"


def _fmt_ci(s: dict) -> str:
    if s.get("n", 0) == 0 or s["ci95"] is None:
        return "-"
    return f"[{s['mean'] - s['ci95']:.1f}, {s['mean'] + s['ci95']:.1f}]"


def _time_cell(finished: List[dict]) -> str:
    """Mean CPU time per run (what it takes on an idle core), with the wall time and the machine's load."""
    if not finished:
        return "-"
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    cpu = [r["cpu_time_s"] for r in finished if r.get("cpu_time_s")]
    loads = [r["mean_load_1min"] for r in finished if r.get("mean_load_1min") is not None]
    parts = ([f"CPU {_duration(mean(cpu))}"] if cpu else []) + [f"wall {_duration(mean([r['wall_time_s'] for r in finished]))}"]
    return ", ".join(parts) + (f" (load {mean(loads):.1f})" if loads else "")


def load_records(study: Study, records_root: str) -> Dict[str, List[dict]]:
    by_row = {r.name: [] for r in study.rows}
    for row in study.rows:
        for seed in row.seeds:
            path = Run(study.name, row, seed).record_path(records_root)
            if os.path.isfile(path):
                by_row[row.name].append(read_json(path))
    return by_row


def write_table(study: Study, records: Dict[str, List[dict]], path: str, command: str) -> None:
    lines = [f"# Study `{study.name}`", ""]
    if study.description:
        lines += [study.description, ""]
    lines += [f"Made by `{command}` (records: `{os.path.relpath(os.path.dirname(path), ROOT)}/*.json`). "
              "AP in %, mean +- sample std over the seeds that finished, and the 95% interval of the mean "
              "(Student's t). A difference with the section's baseline is *resolved* only when the two "
              "intervals are disjoint; otherwise it is within the seeds' spread. Time / run: CPU time of training "
              "and evaluation (one thread: about the wall time on an idle core), and the wall time with the "
              "machine's mean 1-minute load average while it ran (other jobs share the machine).", ""]
    for section in study.sections:
        stats = {r.name: row_stats(records[r.name]) for r in section.rows}
        has_sds = any(k.startswith("sds/") for s in stats.values() for k in s)
        base = stats.get(section.baseline) if section.baseline else None
        lines += [f"## {section.title}", ""]
        header = ["row", "runs", "mask AP", "mask AP 95% CI", "box AP", "box AP 95% CI", "mask AP50", "box AP50"]
        if has_sds:
            header += sorted({k for s in stats.values() for k in s if k.startswith("sds/")})
        header += ["diverged", "time / run"]
        if base is not None:
            header += [f"mask AP vs {section.baseline}", f"box AP vs {section.baseline}"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in section.rows:
            recs, s = records[row.name], stats[row.name]
            diverged = [r for r in recs if r["diverged"]]
            finished = [r for r in recs if not r["diverged"]]
            cells = [row.title, f"{len(recs)}/{len(row.seeds)}", _fmt(s["segm/AP"]), _fmt_ci(s["segm/AP"]),
                     _fmt(s["bbox/AP"]), _fmt_ci(s["bbox/AP"]), _fmt(s["segm/AP50"]), _fmt(s["bbox/AP50"])]
            if has_sds:
                cells += [_fmt(s.get(k, {})) for k in header[8:8 + sum(h.startswith("sds/") for h in header)]]
            cells += [", ".join(f"seed {r['seed']} at {r['diverged_at']}" for r in diverged) or "0",
                      _time_cell(finished)]
            if base is not None:
                cells += ["baseline", "baseline"] if row.name == section.baseline else [
                    compare(s["segm/AP"], base["segm/AP"]), compare(s["bbox/AP"], base["bbox/AP"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Rows: " + "; ".join(
            f"{r.title} = `{r.config}`" + (f" with `{' '.join(r.overrides)}`" if r.overrides else "")
            for r in section.rows), ""]
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)


def write_plot(study: Study, records: Dict[str, List[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(section, row) for section in study.sections for row in section.rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True, squeeze=False)
    for ax, (task, title) in zip(axes[0], (("segm", "mask AP"), ("bbox", "box AP"))):
        for y, (_, row) in enumerate(rows):
            values = [_metric(r, task, "AP") for r in records[row.name] if not r["diverged"]]
            values = [v for v in values if v is not None]
            ax.scatter(values, [y] * len(values), s=14, color="tab:blue", alpha=0.6, zorder=3)
            s = summarize(values)
            if s["n"]:
                ax.errorbar([s["mean"]], [y], xerr=[[s["ci95"] or 0.0], [s["ci95"] or 0.0]], fmt="D",
                            color="black", capsize=4, markersize=5, zorder=4)
        ax.set_title(f"{title} (dots: seeds; diamond and bar: mean and 95% interval)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)))
    axes[0][0].set_yticklabels([f"{row.title} [{section.title.split(' ')[0]}]" for section, row in rows], fontsize=8)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"study {study.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)


def report(study: Study, records_root: str, command: str) -> str:
    folder = os.path.join(records_root, study.name)
    os.makedirs(folder, exist_ok=True)
    records = load_records(study, records_root)
    table = os.path.join(folder, "table.md")
    write_table(study, records, table, command)
    write_plot(study, records, os.path.join(folder, "ap.png"))
    return table


# ---------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", help=f"a study name ({', '.join(sorted(STUDIES))}) or a .json study file")
    p.add_argument("-j", "--jobs", type=int, default=1, help="trainings at a time (default 1)")
    p.add_argument("--only", nargs="+", default=None, metavar="ROW",
                   help="only these rows: names or shell-style patterns (balloon-*)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED", help="only these seeds")
    p.add_argument("--list", action="store_true", help="list the runs and whether they are recorded; run nothing")
    p.add_argument("--report", action="store_true", help="only write the table and the plot from the records")
    p.add_argument("--records", default=RECORDS, help="records folder (default docs/studies)")
    p.add_argument("--outputs", default=OUTPUTS, help="training outputs folder (default output/studies)")
    p.add_argument("--progress", type=float, default=120.0, help="seconds between progress lines (default 120)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"-j/--jobs must be at least 1; got {args.jobs}")
    if args.progress <= 0:
        p.error(f"--progress must be positive; got {args.progress}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # The table covers every record of the study, whatever subset this invocation ran.
    command = f"python tools/study.py {args.study}"
    try:
        study = load_study(args.study)
        rows = [r for r in study.rows if not args.only or any(fnmatch.fnmatchcase(r.name, p) for p in args.only)]
        if not rows:
            raise StudyError(f"--only {' '.join(args.only)} matches no row of {study.name!r}; rows: "
                             + ", ".join(r.name for r in study.rows))
        runs = [Run(study.name, r, s) for k in range(max(len(r.seeds) for r in rows))
                for r in rows for s in r.seeds[k:k + 1]  # seed by seed: every row gets a first seed early
                if args.seeds is None or s in args.seeds]
        if not runs:
            raise StudyError(f"--seeds {' '.join(map(str, args.seeds))} matches no seed of the rows "
                             + ", ".join(f"{r.name} {list(r.seeds)}" for r in rows))
        if args.list:
            for run in runs:
                status = ("recorded" if os.path.isfile(run.record_path(args.records)) else
                          "started" if os.path.isdir(run.output_dir(args.outputs)) else "to run")
                print(f"{run.name:50s} {status:9s} {' '.join([run.row.config, *run.row.overrides])}")
            return 0
        if args.report:
            print(f"wrote {report(study, args.records, command)}")
            return 0
        max_iters = {}
        for row in rows:
            cfg = check_row(row, os.path.join(args.outputs, study.name, row.name))
            max_iters[row.name] = int(cfg.train.max_iter)
    except StudyError as e:
        print(f"study.py: error: {e}", file=sys.stderr)
        return 2

    runner = Runner(study, args.records, args.outputs, args.progress)
    todo = []
    for run in runs:
        if os.path.isfile(run.record_path(args.records)):
            continue
        source = find_reusable(run, args.records)
        if source is not None:
            rec = read_json(source)
            rec.update(study=study.name, row=run.row.name, reused_from=os.path.relpath(source, args.records))
            write_json_atomic(run.record_path(args.records), rec)
            runner.say(f"{run.name}: recorded in {os.path.relpath(source, args.records)}, reused")
            continue
        todo.append(run)
    runner.say(f"study {study.name}: {len(runs) - len(todo)} of {len(runs)} runs recorded, {len(todo)} to run, "
               f"{args.jobs} at a time")
    failed = 0
    done = 0
    walls = []  # of the runs finished by this invocation
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(runner.run, run, max_iters[run.row.name]): run for run in todo}
        try:
            for future in concurrent.futures.as_completed(futures):
                run, rec = futures[future], future.result()
                done += 1
                if rec is None:
                    failed += 1
                    continue
                if rec["diverged"]:
                    result = f"DIVERGED at iteration {rec['diverged_at']}: {rec['error']}"
                else:
                    m = rec["metrics"]
                    result = (f"mask AP {m.get('segm', {}).get('AP', float('nan')):.1f}, "
                              f"box AP {m.get('bbox', {}).get('AP', float('nan')):.1f}")
                walls.append(rec["wall_time_s"])
                left = len(todo) - done
                eta = f"; {left} to run, about {_duration(statistics.mean(walls) * left / args.jobs)} left" if left else ""
                runner.say(f"[{done}/{len(todo)}] {run.name}: {result} ({_duration(rec['wall_time_s'])}){eta}")
                report(study, args.records, command)
        except KeyboardInterrupt:
            runner.stopping.set()
            runner.say("interrupted: unfinished runs resume from their last checkpoint next time")
            for f in futures:
                f.cancel()
            raise
    table = report(study, args.records, command)
    runner.say(f"table: {os.path.relpath(table, ROOT)}; plot: {os.path.relpath(os.path.join(os.path.dirname(table), 'ap.png'), ROOT)}"
               + (f"; {failed} runs failed (not recorded)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
