"""`xor-gpu parity --seeds` and `xor-gpu train --seeds`: input checks, the matrix's verdicts
on plain data, and a real sweep on the CPU. The CPU-vs-device sweep runs in
tests/test_device.py (opencl and gpu envs)."""
import dataclasses
import json
import os

import pytest

from xorlib import CLOSE, FAR, STALLED_FAR, one_line_error, run_cli, stub_sweep
from xor_gpu import render, sweep
from xor_gpu.config import TrainConfig
from xor_gpu.errors import CheckFailed, DeviceError
from xor_gpu.results.parity import Failure
from xor_gpu.results.runs import Tolerances
from xor_gpu.results.train_report import SeedsReport

TOL = Tolerances(1e-4, 1e-3)

DEVICES = ["cpu", "opencl0:0"]


@pytest.mark.parametrize("command", ["train", "parity"])
@pytest.mark.parametrize("args, fragment", [
    (["--seeds", ""], "bad --seeds '': use numbers and ranges"),
    (["--seeds", "9-3"], "the range 9-3 runs backwards"),
    (["--seeds", "one,two"], "use numbers and ranges"),
    (["--seeds", "1,2,2"], "seed 2 is given twice"),
    (["--seeds", "0-1000"], "at most 1000 seeds"),
    (["--seed", "1", "--seeds", "0-3"], "argument --seeds: not allowed with argument --seed"),
])
def test_bad_seeds_exit_2_with_one_line_and_write_nothing(tmp_path, command, args, fragment):
    where = ["--devices", "cpu,opencl0:0"] if command == "parity" else []
    proc = run_cli(command, *where, *args, "--json", tmp_path / "r.json", "--plot", tmp_path / "r.png")
    one_line_error(proc, 2, fragment)
    assert os.listdir(tmp_path) == []




def test_seeds_that_converge_nowhere_are_reported_not_failed():
    """Seed 1 stalls on both devices, far apart: listed, and parity still passes."""
    reports = stub_sweep(CLOSE, STALLED_FAR)
    reports["cpu"].runs["1"].converged = False
    result = sweep.assess(TrainConfig(), DEVICES, [0, 1], reports, {}, TOL)
    result.verdict()
    data = result.to_dict()
    assert data["passed"] and data["converged_nowhere"] == [1] and data["converged_everywhere"] == [0]
    assert data["disagree"] == data["beyond_tolerance"] == []
    assert data["matrix"]["1"]["converged"] == {"cpu": False, "opencl0:0": False}
    # The one view of it that its text, plot and verdict read: a row per seed.
    assert [(r.seed, r.kind) for r in result.rows] == [(0, "converged_everywhere"), (1, "converged_nowhere")]
    assert result.converged_counts() == {"cpu": 1, "opencl0:0": 1}
    assert result.worst().max_abs_prediction_diff == pytest.approx(0.4)  # seed 1 stalled: 0.5 against 0.1


@pytest.mark.parametrize("others, fragment", [
    ((CLOSE, FAR, FAR), "devices differ by more than the tolerance on seeds 1,2"),
    ((CLOSE, dataclasses.replace(CLOSE, converged=False)), "devices disagree on convergence on seed 1"),
])
def test_a_seed_beyond_tolerance_or_in_disagreement_fails_with_exit_5(others, fragment):
    reports = stub_sweep(*others)
    for key, other in enumerate(others):
        reports["cpu"].runs[str(key)].converged = True
    result = sweep.assess(TrainConfig(), DEVICES, list(range(len(others))), reports, {}, TOL)
    assert not result.to_dict()["passed"]
    with pytest.raises(CheckFailed, match=fragment) as failed:
        result.verdict()
    assert failed.value.exit_status == 5


def test_a_device_that_cannot_run_is_a_device_error():
    result = sweep.assess(TrainConfig(), DEVICES, [0, 1], {"cpu": stub_sweep(CLOSE)["cpu"]},
                        {"opencl0:0": Failure(3, "no platform")}, TOL)
    data = result.to_dict()
    assert data["matrix"] == {} and not data["passed"]
    with pytest.raises(DeviceError, match=r"opencl0:0 failed \(exit 3\): no platform"):
        result.verdict()


def test_train_seeds_on_the_cpu_reports_each_seed(tmp_path):
    """Seed 1 stalls and seed 3 converges in 2,000 steps at lr 0.3: --check fails on the
    stalled one, and the report (written before the verdict) holds both, in order."""
    path = tmp_path / "seeds.json"
    proc = run_cli("train", "--seeds", "3,1", "--steps", "2000", "--lr", "0.3", "--check", "--json", path)
    one_line_error(proc, 5, "not every seed converged")
    data = json.loads(path.read_text())
    assert data["schema"] == "xor_gpu.train-seeds/1" and data["seeds"] == [3, 1]
    assert [data["runs"][s]["converged"] for s in ("3", "1")] == [True, False]
    assert [data["runs"][s]["config"]["seed"] for s in ("3", "1")] == [3, 1]
    text = render.seeds(SeedsReport.from_dict(data))
    assert proc.stdout.strip() == text  # the text is the report's (xor_gpu.render)
    assert text.splitlines()[-1].startswith("1 of 2 seeds converged on cpu")
