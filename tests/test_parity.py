"""`xor-gpu parity`: its input checks, its verdicts on plain data, and a device that cannot be
used. The full CPU-vs-device parity runs in tests/test_device.py (opencl and gpu envs)."""
import json
import os

import pytest

from xorlib import one_line_error, run_cli, stub_run, without_cuda_gpu
from xor_gpu import parity
from xor_gpu.config import TrainConfig
from xor_gpu.errors import CheckFailed, DeviceError
from xor_gpu.results.parity import Failure
from xor_gpu.results.runs import Tolerances


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--devices", "cpu"], "at least two devices"),
        (["--devices", "cpu,cpu"], "each device once"),
        (["--devices", "cpu,gpu"], "unknown device 'gpu'"),
        (["--devices", "cpu,opencl0:0", "--atol", "-1"], "atol must be a finite number >= 0"),
        (["--devices", "cpu,opencl0:0", "--rtol", "nan"], "rtol must be a finite number >= 0"),
        (["--devices", "cpu,opencl0:0", "--steps", "0"], "steps must be between"),
    ],
)
def test_bad_input_exits_2(tmp_path, args, fragment):
    proc = run_cli("parity", *args, "--json", tmp_path / "p.json")
    one_line_error(proc, 2, fragment)
    assert os.listdir(tmp_path) == []


@without_cuda_gpu
def test_an_unusable_device_exits_3_and_records_why(tmp_path):
    proc = run_cli("parity", "--devices", "cpu,cuda", "--steps", "100", "--json", tmp_path / "p.json")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # progress lines come first
    assert last.startswith("xor-gpu: error: cuda failed (exit 3): device cuda requested but Theano could not initialise")
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["passed"] is False and set(report["runs"]) == {"cpu"}
    assert report["failures"]["cuda"]["exit_status"] == 3


REF = stub_run([0.9, 0.1, 0.9, 0.1], [1.0, 0.5])


@pytest.mark.parametrize("other, error, fragment", [
    (stub_run([0.9, 0.1, 0.9, 0.1], [1.0, 0.5]), None, None),
    (stub_run([0.9 + 5e-5, 0.1, 0.9, 0.1], [1.0, 0.5 * (1 + 5e-4)], sha="b" * 64), None, None),
    (stub_run([0.9 + 2e-4, 0.1, 0.9, 0.1], [1.0, 0.5], sha="b" * 64), CheckFailed, "differ by more than the tolerance"),
    (stub_run([0.9, 0.1, 0.9, 0.1], [1.0, 0.5 * (1 + 2e-3)], sha="b" * 64), CheckFailed, "differ by more than"),
    (stub_run([0.9, 0.1, 0.9, 0.1], [1.0, 0.5], converged=False), CheckFailed, "not every device converged"),
])
def test_verdict_on_plain_data(other, error, fragment):
    result = parity.assess(TrainConfig(), ["cpu", "opencl0:0"], {"cpu": REF, "opencl0:0": other}, {},
                           Tolerances(1e-4, 1e-3))
    data = result.to_dict()
    if error is None:
        result.verdict()
        assert data["passed"]
        assert data["differences"]["opencl0:0"]["bitwise_equal"] == (other.weights_sha256 == REF.weights_sha256)
    else:
        assert not data["passed"]
        with pytest.raises(error, match=fragment):
            result.verdict()


def test_a_failed_device_is_a_device_error_only_for_exit_3():
    for status, error in ((3, DeviceError), (4, CheckFailed)):
        result = parity.assess(TrainConfig(), ["cpu", "cuda"], {"cpu": REF}, {"cuda": Failure(status, "boom")},
                               Tolerances(1e-4, 1e-3))
        assert result.to_dict()["failures"] == {"cuda": {"exit_status": status, "error": "boom"}}
        with pytest.raises(error, match=f"cuda failed \\(exit {status}\\): boom"):
            result.verdict()
