"""The train report (xor_gpu.results.train_report): what it says about the run's stack, which
BLAS Theano called and the versions of what the run used (real `xor-gpu train` processes);
read by attribute, written back as it was read, fields of other releases kept; what a
comparison needs and a report lacks is bad input naming it. (Every report of the earlier
releases round-trips in tests/test_results.py.)"""
import copy
import json
import os

import pytest

from xorlib import train_report
from xor_gpu import host, render
from xor_gpu.errors import ConfigError
from xor_gpu.compile_cache import compiledir
from xor_gpu.results.train_report import (CompileCache, LossHistory, NvrtcArch, RunDevice, SeedsReport, TrainReport,
                                          read)


def _report(tmp_path, name, *args, flags=None):
    env = {"THEANO_FLAGS": f"{os.environ.get('THEANO_FLAGS', '')},{flags}"} if flags is not None else None
    return train_report(tmp_path, *args, name=name, env=env)


def test_the_report_names_the_blas_and_the_user_can_choose_numpys(tmp_path):
    """OpenBLAS by default (where installed: scripts/bootstrap and the image install it);
    `blas.ldflags=` (empty) still reaches Theano, which then calls BLAS through numpy's C-API.
    Both end the seed config within 1e-6 of each other, and not bitwise equal (different
    BLAS code sums in a different order), which shows that the flag took effect."""
    default = _report(tmp_path, "default.json", "--device", "cpu")
    numpy_blas = _report(tmp_path, "numpy.json", "--device", "cpu", flags="blas.ldflags=")

    blas = default["blas"]
    assert blas["ldflags"] == f"-l:{host.OPENBLAS}", "install libopenblas0 (scripts/bootstrap does)"
    assert os.path.isfile(blas["library"]) and blas["version"].startswith("OpenBLAS ")
    assert numpy_blas["blas"] == {"ldflags": "", "library": "numpy C-API", "version": None, "kernels": None}

    diff = max(abs(default["predictions"][k] - numpy_blas["predictions"][k]) for k in default["predictions"])
    assert 0 < diff <= 1e-6, diff
    assert default["weights_sha256"] != numpy_blas["weights_sha256"]
    assert default["converged"] and numpy_blas["converged"]


def test_a_cpu_run_neither_loads_nor_reports_pygpu(tmp_path):
    report = _report(tmp_path, "r.json", "--device", "cpu", "--steps", "10")
    assert set(report["versions"]) == {"python", "numpy", "theano"}


@pytest.mark.device
def test_a_device_run_reports_pygpu_and_no_host_blas(device, tmp_path):
    report = _report(tmp_path, "r.json", "--device", device, "--steps", "10")
    if device == "cpu":
        pytest.skip("the cpu env's device is the CPU: the test above covers it")
    assert report["versions"]["pygpu"] == "0.7.6"
    # The device's own BLAS (clBLAST, cuBLAS) does the products: no host BLAS is loaded.
    assert report["blas"]["library"] is None and report["blas"]["version"] is None


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The report of a real short run, as the file holds it."""
    return train_report(tmp_path_factory.mktemp("live"), "--steps", "2000", "--lr", "0.3")


def test_a_live_report_is_read_by_attribute_and_written_back_byte_for_byte(live):
    report = TrainReport.from_dict(live)
    assert isinstance(report.device, RunDevice) and isinstance(report.loss_history, LossHistory)
    assert (report.device.requested, report.steps, report.seed, report.engine) == ("cpu", 2000, 1234, "theano")
    assert report.loss_history.every == 4 and len(report.loss_history.values) == 500 and report.converged
    # The run's record of its compile cache, typed: which cache, no lock waited for, nothing said.
    assert isinstance(report.compile_cache, CompileCache) and report.compile_cache.folder == compiledir()
    assert (report.compile_cache.lock_wait_seconds, report.compile_cache.events) == (0, [])
    assert json.dumps(report.to_dict(), indent=2) == json.dumps(live, indent=2)  # the same keys, in order


def test_fields_of_a_later_release_are_kept_and_missing_ones_stay_missing(live):
    """A later release adds fields (at the top, and inside the device); an earlier one lacked
    cudnn: each is written back as it was read."""
    later = copy.deepcopy(live)
    later["energy_joules"] = 12.5
    later["device"]["uuid"] = "GPU-0"
    later["compile_cache"]["node_local"] = True
    del later["cudnn"]
    report = TrainReport.from_dict(later)
    assert report.extra == {"energy_joules": 12.5} and report.device.extra == {"uuid": "GPU-0"}
    assert report.compile_cache.extra == {"node_local": True}
    assert report.cudnn is None and "cudnn" in report.absent
    assert report.to_dict() == later


def test_a_blackwell_runs_nvrtc_architecture_is_read_typed_and_shown(live):
    """What xor_gpu's NVRTC front did on compute capability 10 and more (None everywhere else:
    a CPU run's report says null)."""
    assert live["nvrtc_arch"] is None
    blackwell = {**copy.deepcopy(live), "nvrtc_arch": {"asked": "compute_10", "compiled_for": "compute_100",
                                                       "compilations": 28}}
    report = TrainReport.from_dict(blackwell)
    assert isinstance(report.nvrtc_arch, NvrtcArch) and report.nvrtc_arch.compiled_for == "compute_100"
    assert report.to_dict() == blackwell
    assert ("nvrtc arch      compute_100, given in full by xor_gpu's NVRTC front (28 compilations; "
            "libgpuarray asked for compute_10)") in render.train(report).splitlines()


def test_a_seeds_report_holds_a_train_report_per_seed(tmp_path):
    data = train_report(tmp_path, "--seeds", "3,1", "--steps", "200")
    seeds = read(data)
    assert isinstance(seeds, SeedsReport) and seeds.seeds == [3, 1] and seeds.device == "cpu"
    assert [(k, r.seed) for k, r in seeds.runs.items()] == [("3", 3), ("1", 1)]
    assert seeds.to_dict() == data


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(schema="xor_gpu.parity/1"), "not a xor_gpu.train/1 run"),
    (lambda d: d["predictions"].pop("1,1"), "predictions missing (need rows 1,0, 0,0, 0,1, 1,1)"),
    (lambda d: d["predictions"].update({"0,1": float("inf")}), "prediction for row 0,1 is inf, not a finite number"),
    (lambda d: d.update(loss_history=[1.0]), "loss_history missing or not finite"),
    (lambda d: d["config"].pop("lr"), "config missing (need floatx, hidden, lr, steps, seed)"),
    (lambda d: d.pop("weights_sha256"), "weights_sha256 missing"),
    (lambda d: d.update(converged="yes"), "converged or device missing"),
])
def test_what_a_comparison_needs_and_a_report_lacks_is_bad_input(live, edit, fragment):
    data = copy.deepcopy(live)
    edit(data)
    with pytest.raises(ConfigError) as bad:
        TrainReport.from_dict(data, "r.json")
    assert str(bad.value).startswith("r.json: ") and fragment in str(bad.value)
