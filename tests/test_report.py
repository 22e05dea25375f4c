"""What a train report says about the run's stack: which BLAS Theano called, and the
versions of what the run used (real `xor-gpu train` processes)."""
import os

import pytest

from xorlib import train_report
from xor_gpu import host


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
