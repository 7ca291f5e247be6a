"""tools/study.py: a grid of 2-iteration runs on the generated shapes, resuming, bad grids, statistics."""

import json
import os
import subprocess
import sys

import pytest

from cascades.engine.config import load_config
from cascades.engine.smoke import smoke_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "tools", "study.py")
DEMO = "configs/DefaultShapes/cascade_mask_rcnn_R_18_FPN_demo.py"
sys.path.insert(0, os.path.join(ROOT, "tools"))

import study  # noqa: E402
import study_grids  # noqa: E402


def smoke(tmp_path):
    """The smoke overrides of the demo config, without an output folder: the study names each run's."""
    return [o for o in smoke_overrides(load_config(os.path.join(ROOT, DEMO)), str(tmp_path))
            if not o.startswith("train.output_dir=")]


def write_grid(tmp_path, rows, name="tiny", baseline=None):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "sections": [{"title": "shapes", "baseline": baseline, "rows": rows}]}))
    return str(path)


def run_study(tmp_path, *args):
    return subprocess.run([sys.executable, STUDY, *args, "--records", str(tmp_path / "records"),
                           "--outputs", str(tmp_path / "outputs"), "--progress", "5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # 15-35 s: trainings in subprocesses
def test_grid_runs_records_reports_and_skips_recorded_runs(tmp_path):
    grid = write_grid(tmp_path, [{"name": "demo", "config": DEMO, "overrides": smoke(tmp_path), "seeds": [1, 2]}])
    result = run_study(tmp_path, grid)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = tmp_path / "records" / "tiny"
    for seed in (1, 2):
        rec = json.loads((records / f"demo__seed{seed}.json").read_text())
        assert rec["seed"] == seed and rec["config"] == DEMO and rec["diverged"] is False
        assert rec["iterations"] == rec["max_iter"] == 2
        assert {"AP", "AP50"} <= set(rec["metrics"]["segm"]) and {"AP", "AP50"} <= set(rec["metrics"]["bbox"])
        assert rec["final_losses"]["total_loss"] > 0 and rec["wall_time_s"] > 0
        assert len(rec["git_commit"]) == 40
        # Its training wrote outside the records, in its own folder.
        assert (tmp_path / "outputs" / "tiny" / f"demo__seed{seed}" / "model_final.pth").is_file()
    table = (records / "table.md").read_text()
    assert "| demo | 2/2 |" in table
    assert (records / "ap.png").stat().st_size > 0

    again = run_study(tmp_path, grid)
    assert again.returncode == 0, again.stderr
    assert "2 of 2 runs recorded, 0 to run" in again.stdout
    assert "starting" not in again.stdout


@pytest.mark.slow  # 15-35 s: trainings in subprocesses
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    """A run whose training stopped after a checkpoint continues from it (here: its first 2 of 4
    iterations were trained by an earlier, interrupted study)."""
    overrides = smoke(tmp_path)
    grid_rows = [{"name": "demo", "config": DEMO, "overrides": [*overrides, "train.max_iter=4"], "seeds": [1]}]
    out = tmp_path / "outputs" / "tiny" / "demo__seed1"
    out.mkdir(parents=True)
    first = subprocess.run([sys.executable, os.path.join(ROOT, "train_net.py"), "--config-file", DEMO, *overrides,
                            "train.max_iter=4", "train.checkpointer.period=2", "train.seed=1",
                            f"train.output_dir={out}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert first.returncode == 0, first.stdout[-3000:]
    # As if killed after the checkpoint of iteration 2: the final weights and evaluation are gone.
    (out / "model_final.pth").unlink()
    (out / "eval_results.json").unlink()
    (out / "last_checkpoint").write_text("model_0000001.pth")
    result = run_study(tmp_path, write_grid(tmp_path, grid_rows))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming after iteration 1" in result.stdout
    rec = json.loads((tmp_path / "records" / "tiny" / "demo__seed1.json").read_text())
    assert rec["iterations"] == 4 and "metrics" in rec


@pytest.mark.parametrize("row, expected", [
    ({"name": "bad", "config": "configs/DefaultShapes/no_such_config.py"}, "config 'configs/DefaultShapes/no_such_"),
    ({"name": "bad", "config": DEMO, "overrides": ["model.roi_heads.num_clases=3"]},
     "the config has no key 'model.roi_heads.num_clases'; did you mean model.roi_heads.num_classes"),
    ({"name": "bad", "config": DEMO, "seeds": [-1]}, "seeds must be non-negative integers"),
])
def test_bad_grid_fails_in_one_line_before_training(tmp_path, row, expected):
    good = {"name": "good", "config": DEMO, "overrides": smoke(tmp_path), "seeds": [1]}
    result = run_study(tmp_path, write_grid(tmp_path, [good, row]))
    assert result.returncode == 2
    assert result.stderr.startswith("study.py: error: row 'bad'") and expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "records" / "tiny").exists()


def test_unknown_study_and_unmatched_filter_are_one_line_errors(tmp_path):
    result = run_study(tmp_path, "no_such_study")
    assert result.returncode == 2 and "unknown study 'no_such_study'; studies: issue10, issue12" in result.stderr
    grid = write_grid(tmp_path, [{"name": "demo", "config": DEMO}])
    result = run_study(tmp_path, grid, "--only", "xyz")
    assert result.returncode == 2 and "--only xyz matches no row" in result.stderr


def test_divergence_is_read_from_the_log():
    log = "... \nFloatingPointError: Loss became infinite or NaN at iteration=117!\nloss_dict = {...}\n"
    assert study._divergence(log, [{"iteration": 99}]) == {
        "iteration": 117, "message": "FloatingPointError: Loss became infinite or NaN at iteration=117!"}
    # Without an iteration in the message: the one after the last logged.
    assert study._divergence("AssertionError: Box tensor contains infinite or NaN!", [{"iteration": 99}])[
        "iteration"] == 100
    assert study._divergence("Traceback ...\nRuntimeError: out of memory", [{"iteration": 99}]) is None


def test_statistics_and_resolution():
    s = study.summarize([10.0, 12.0, 14.0])
    assert s["mean"] == 12.0 and s["std"] == 2.0
    assert s["ci95"] == pytest.approx(4.303 * 2.0 / 3 ** 0.5)
    assert study.summarize([5.0]) == {"n": 1, "mean": 5.0, "std": None, "ci95": None}
    far = study.summarize([30.0, 31.0, 32.0])
    assert study.compare(far, s) == "+19.0 (resolved)"
    near = study.summarize([13.0, 14.0, 15.0])
    assert study.compare(near, s) == "+2.0 (not resolved)"
    assert study.compare(study.summarize([20.0]), s) == "+8.0 (one seed: not resolved)"


def test_records_of_another_study_are_reused(tmp_path):
    row = {"name": "demo", "config": DEMO, "overrides": ["train.max_iter=2"], "seeds": [1]}
    other = tmp_path / "records" / "other"
    other.mkdir(parents=True)
    record = {"study": "other", "row": "x", "seed": 1, "config": DEMO, "overrides": ["train.max_iter=2"],
              "diverged": False, "wall_time_s": 1.0, "metrics": {"segm": {"AP": 1.0}, "bbox": {"AP": 2.0}}}
    (other / "x__seed1.json").write_text(json.dumps(record))
    result = run_study(tmp_path, write_grid(tmp_path, [row]))
    assert result.returncode == 0, result.stderr
    reused = json.loads((tmp_path / "records" / "tiny" / "demo__seed1.json").read_text())
    assert reused["reused_from"] == "other/x__seed1.json" and reused["row"] == "demo"
    assert not (tmp_path / "outputs" / "tiny" / "demo__seed1").exists()


def test_named_studies_load():
    """Every row of the named studies loads with its overrides (datasets and models are checked when run)."""
    for s in study_grids.STUDIES.values():
        for row in s.rows:
            load_config(os.path.join(ROOT, row.config), [*row.overrides, "train.seed=1"])
