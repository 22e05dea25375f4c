"""The figure of train, parity, check and compare: pure helpers on plain data, then real
renders of real training reports (two short CPU runs whose learning rates differ by 1%)."""
import copy
import dataclasses
import struct
import subprocess
import sys

import numpy as np
import pytest

from xor_gpu import sweep
from xor_gpu.config import TrainConfig
from xor_gpu.plots import loss_axis_scale, margin_text, plot_runs, plot_seeds
from xor_gpu.results.runs import Tolerances, relative_loss_differences as relative_differences
from xor_gpu.results.train_report import TrainReport
from xorlib import CLOSE, STALLED_FAR, stub_sweep, train_report

ATOL, RTOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A converging 2,000-step run and the same with lr 1% higher: a real difference, the size of a bug."""
    tmp = tmp_path_factory.mktemp("reports")
    base = train_report(tmp, "--steps", "2000", "--lr", "0.3", name="base.json")
    bumped = train_report(tmp, "--steps", "2000", "--lr", "0.303", name="bumped.json")
    return TrainReport.from_dict(base), TrainReport.from_dict(bumped)


def nudged(report, scale, seed):
    """The report with predictions and every other loss sample moved by about `scale` (relative)."""
    rng = np.random.RandomState(seed)
    r = copy.deepcopy(report)
    r.predictions = {k: v + scale * rng.uniform(0.5, 1) for k, v in r.predictions.items()}
    r.loss_history.values = [v * (1 + scale * (i % 2)) for i, v in enumerate(r.loss_history.values)]
    return r


def png_size(path):
    """(width, height) from the PNG header, after checking it is one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def texts(ax, gid):
    return [t.get_text() for t in ax.texts if t.get_gid() == gid]


def line(ax, gid):
    [found] = [x for x in ax.lines if x.get_gid() == gid]
    return found


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --- helpers on plain data

def test_loss_axis_scale_is_log_only_for_a_wide_span():
    assert loss_axis_scale([1.07, 0.5, 0.0285]) == "log"
    assert loss_axis_scale([1.068, 1.03, 1.009]) == "linear"
    assert loss_axis_scale([1.0, 0.06]) == "linear"  # under 20x
    assert loss_axis_scale([1.0, 0.0]) == "linear"  # a log axis cannot show 0


def test_relative_differences_keep_exact_zeros_apart():
    values, zero = relative_differences([1.0, 2.0, 4.0, 8.0], [1.0, 2.002, 3.0])
    np.testing.assert_allclose(values, [0.0, 0.001, 0.25])
    assert zero.tolist() == [True, False, False]
    values, zero = relative_differences([0.0], [1e-3])  # a zero reference does not divide by zero
    assert np.isfinite(values).all() and not zero.any()


@pytest.mark.parametrize("diff, tol, text", [
    (0.0, 1e-4, "0: bitwise equal"),
    (0.0, None, "0: bitwise equal"),
    (1.2e-7, 1e-4, "1.2e-07: 830x inside"),
    (5e-9, 1e-4, "5e-09: 20,000x inside"),
    (4e-5, 1e-4, "4e-05: 2.5x inside"),
    (1e-4, 1e-4, "0.0001: 1x inside"),
    (2.4e-4, 1e-4, "0.00024: 2.4x OVER"),
    (1.8e-3, 1e-4, "0.0018: 18x OVER"),
    (1e-5, 0.0, "1e-05: OVER tolerance 0"),
    (1e-5, None, "1e-05"),
])
def test_margin_text(diff, tol, text):
    assert margin_text(diff, tol) == text


def test_plots_module_does_not_import_matplotlib():
    """The CLI imports it for every command; matplotlib loads only when a plot is drawn."""
    code = "import sys, xor_gpu.plots; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- real renders

def test_single_run(tmp_path, reports):
    base, _ = reports
    fig = plot_runs(tmp_path / "train.png", {"cpu": base}, "XOR loss, cpu")
    width, height = png_size(tmp_path / "train.png")
    assert 800 <= width <= 1600 and 250 <= height <= 600
    [ax] = fig.axes
    assert ax.get_yscale() == "log"  # 1.07 down to 0.029
    assert ax.get_legend() is None  # the title names the one run
    assert [p.name for p in tmp_path.iterdir()] == ["train.png"]  # no temporary file left


def test_short_run_reads_plain_numbers_on_a_linear_axis(tmp_path, reports):
    base = copy.deepcopy(reports[0])
    base.loss_history.values = base.loss_history.values[:30]  # 1.068 .. about 1.0
    fig = plot_runs(tmp_path / "short.png", {"cpu": base}, "XOR loss, cpu, 120 steps")
    png_size(tmp_path / "short.png")
    [ax] = fig.axes
    assert ax.get_yscale() == "linear"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels and all(label.replace(".", "").isdigit() for label in labels), labels
    assert ax.yaxis.get_offset_text().get_text() == ""


def test_pair_with_real_differences_shows_both_tolerances(tmp_path, reports):
    base, bumped = reports
    runs = {"cpu": base, "cpu lr+1%": bumped, "cpu nudged": nudged(base, 1e-7, 0)}
    fig = plot_runs(tmp_path / "parity.png", runs, "parity", reference="cpu", atol=ATOL, rtol=RTOL)
    png_size(tmp_path / "parity.png")
    loss, rel, pred = fig.axes
    assert rel.get_yscale() == "log" and pred.get_xscale() == "log"
    assert list(line(rel, "tolerance-rtol").get_ydata()) == [RTOL, RTOL]
    assert list(line(pred, "tolerance-atol").get_xdata()) == [ATOL, ATOL]
    # lr 1% higher moves predictions by ~1e-3: over; 1e-7 is ~1,000x inside.
    over, inside = texts(pred, "margin")
    assert over.endswith("x OVER"), over
    assert inside.endswith("x inside") and float(inside.split(": ")[1].split("x")[0].replace(",", "")) > 500, inside
    assert all("bitwise" not in t for t in legend_texts(rel))
    # nudged: every other loss sample is exactly equal, and is drawn on the strip, not as a number.
    [strip] = rel.child_axes
    bumped_zero, nudged_zero = [x for x in strip.lines if x.get_gid() == "exactly-equal"]
    assert len(nudged_zero.get_xdata()) == 250
    assert len(bumped_zero.get_xdata()) >= 1  # the loss before step 0 is the same for both lrs
    assert min(y for x in rel.lines if x.get_gid() is None for y in x.get_ydata() if y == y) > 0


def test_bitwise_equal_pair_says_so(tmp_path, reports):
    base, _ = reports
    runs = {"cpu": base, "cpu again": copy.deepcopy(base)}
    fig = plot_runs(tmp_path / "determinism.png", runs, "determinism", reference="cpu", atol=ATOL, rtol=RTOL)
    png_size(tmp_path / "determinism.png")
    loss, rel, pred = fig.axes
    assert legend_texts(rel) == ["cpu again: bitwise equal"]
    [strip] = rel.child_axes
    [zeros] = [x for x in strip.lines if x.get_gid() == "exactly-equal"]
    assert len(zeros.get_xdata()) == len(base.loss_history.values)
    assert texts(pred, "margin") == ["0: bitwise equal"]
    assert not pred.patches  # no bar pretends to a value
    assert line(rel, "tolerance-rtol")


def test_fleet_of_20_against_an_outside_reference(tmp_path, reports):
    base, bumped = reports
    scales = [0, 1e-7, 1e-6, 1e-5, 3e-4]
    runs = {f"node{i:02d}/opencl0:0": nudged(base, scales[i % 5], i) for i in range(19)}
    runs["node19/opencl0:0"] = bumped
    fig = plot_runs(tmp_path / "fleet.png", runs, "compare", reference=("reference (builtin)", base),
                    atol=ATOL, rtol=RTOL)
    width, height = png_size(tmp_path / "fleet.png")
    plot_runs(tmp_path / "pair.png", {"cpu": base, "other": bumped}, "pair", reference="cpu", atol=ATOL, rtol=RTOL)
    assert height > 1.8 * png_size(tmp_path / "pair.png")[1]  # the bars get room, one row per run
    assert width <= 1600 and height <= 3000
    assert (tmp_path / "fleet.png").stat().st_size < 2_000_000
    loss, rel, pred = fig.axes
    assert [t.get_text() for t in pred.get_yticklabels()] == list(runs)
    margins = texts(pred, "margin")
    assert len(margins) == 20
    assert sum(m == "0: bitwise equal" for m in margins) == 4
    assert sum(m.endswith("OVER") for m in margins) == 4  # 3e-4 (3 runs) and lr+1%
    assert sum(m.endswith("inside") for m in margins) == 12
    assert len(legend_texts(rel)) == 20
    assert legend_texts(loss)[0] == "reference (builtin)"  # a fleet's loss legend names the reference only


def test_seed_sweep_draws_every_seed_against_atol(tmp_path):
    """parity --seeds: one point per seed on the log axis, exact zeros on the strip below,
    hollow points for seeds that converged nowhere, the atol line."""
    same = dataclasses.replace(CLOSE, predictions=dict(stub_sweep(CLOSE)["cpu"].runs["0"].predictions))
    reports = stub_sweep(CLOSE, STALLED_FAR, same)
    reports["cpu"].runs["1"].converged = False
    data = sweep.assess(TrainConfig(), ["cpu", "opencl0:0"], [0, 1, 2], reports, {}, Tolerances(ATOL, RTOL))
    fig = plot_seeds(tmp_path / "sweep.png", data)
    png_size(tmp_path / "sweep.png")
    ax, strip = fig.axes
    assert ax.get_yscale() == "log" and list(line(ax, "tolerance-atol").get_ydata()) == [ATOL, ATOL]
    filled, hollow, _ = ax.collections  # converged everywhere, nowhere, disagreements
    assert [list(c.get_offsets()[:, 0]) for c in (filled, hollow)] == [[0], [1]]
    assert list(strip.lines[0].get_xdata()) == [2]  # seed 2's predictions are exactly the reference's
