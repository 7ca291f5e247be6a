"""cascades.engine.run_report: the contact sheet's layout and the training curves' data."""

import json

import numpy as np
import pytest

from cascades.engine.run_report import CAPTION, GAP, contact_sheet, plot_training_curves, training_series


def solid(height, width, value):
    return np.full((height, width, 3), value, np.uint8)


def test_contact_sheet_grid_and_panels():
    tile = 64
    # Five pairs of distinct grey levels; the third pair's images are wide (aspect kept, padded).
    pairs = [(solid(50, 50, 10 + 40 * k), solid(50, 50, 30 + 40 * k)) for k in range(5)]
    pairs[2] = (solid(32, 64, 90), solid(32, 64, 110))
    sheet = contact_sheet(pairs, columns=2, tile=tile)
    rows, cell_h, cell_w = 3, tile + CAPTION, 2 * tile
    assert sheet.shape == (rows * cell_h + 2 * GAP, 2 * cell_w + GAP, 3)
    for k, (left, right) in enumerate(pairs):
        top, x = (k // 2) * (cell_h + GAP) + CAPTION, (k % 2) * (cell_w + GAP)
        centre = top + tile // 2
        # Ground truth on the left half of the pair's cell, prediction on the right.
        assert (sheet[centre, x + tile // 2] == left[0, 0]).all(), k
        assert (sheet[centre, x + tile + tile // 2] == right[0, 0]).all(), k
        assert (sheet[top - CAPTION:top, x:x + cell_w] < 255).any(), f"pair {k} has its captions"
    # The wide image fills its tile's width and half its height, centred: white above and below.
    top, x = 1 * (cell_h + GAP) + CAPTION, 0
    assert (sheet[top + 2, x + tile // 2] == 255).all() and (sheet[top + tile // 2, x + 1] == 90).all()
    # The sixth cell (no pair) stays blank.
    assert (sheet[2 * (cell_h + GAP):, cell_w + GAP:] == 255).all()


def test_contact_sheet_of_fewer_pairs_than_columns_and_none():
    sheet = contact_sheet([(solid(10, 20, 0), solid(20, 10, 0))], columns=4, tile=32)
    assert sheet.shape == (32 + CAPTION, 64, 3)
    with pytest.raises(ValueError, match="at least one pair"):
        contact_sheet([])


def write_metrics(path, records):
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.write('{"iteration": 99, "total_lo')  # a line a kill cut short


def test_training_curves_plot_the_logged_series(tmp_path):
    metrics = tmp_path / "metrics.json"
    write_metrics(metrics, [
        {"iteration": 19, "total_loss": 3.0, "loss_cls_stage0": 1.5, "loss_mask": 0.7, "lr": 0.001, "data_time": 0.1},
        {"iteration": 39, "total_loss": 2.0, "loss_cls_stage0": 1.0, "loss_mask": 0.5, "lr": 0.001},
        {"iteration": 39, "bbox/AP": 41.5, "segm/AP": 38.25, "segm/AP50": 70.0, "bbox/APs": float("nan")},
        {"iteration": 59, "total_loss": 1.0, "loss_cls_stage0": 0.5, "loss_mask": 0.25, "lr": 0.0001},
        {"iteration": 59, "bbox/AP": 50.0, "segm/AP": 47.0},
    ])
    losses, aps = training_series(str(metrics))
    assert losses == {"total_loss": [(19, 3.0), (39, 2.0), (59, 1.0)],
                      "loss_cls_stage0": [(19, 1.5), (39, 1.0), (59, 0.5)],
                      "loss_mask": [(19, 0.7), (39, 0.5), (59, 0.25)]}
    assert aps == {"bbox/AP": [(39, 41.5), (59, 50.0)], "segm/AP": [(39, 38.25), (59, 47.0)]}

    figure = plot_training_curves(losses, aps)
    loss_axes, ap_axes = figure.axes
    plotted = {line.get_label(): list(zip(line.get_xdata(), line.get_ydata())) for line in loss_axes.get_lines()}
    assert plotted == losses
    assert loss_axes.get_yscale() == "log"
    assert {line.get_label(): list(zip(line.get_xdata(), line.get_ydata())) for line in ap_axes.get_lines()} == aps
    # total_loss first and drawn bolder than the parts.
    lines = loss_axes.get_lines()
    assert lines[0].get_label() == "total_loss" and lines[0].get_linewidth() > lines[1].get_linewidth()
