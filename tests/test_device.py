"""The device under test (THEANO_FLAGS device=..., set per tox env) against the CPU.

In CI these run for real on OpenCL (PoCL on the CPU), which takes libgpuarray's GPU code
path: Gpu ops, transfers, kernels. On a CUDA machine the gpu env runs the same tests.
"""
import json
import os
import subprocess
import sys

import pytest

from xorlib import DEVICE, run_cli, strict, train_report
from xor_gpu import devices
from xor_gpu.backend import HEAVY_OPS
from xor_gpu.reexec import wanted_env

pytestmark = pytest.mark.device


def test_graph_runs_on_the_requested_device(device, tmp_path):
    report = train_report(tmp_path, "--device", device, "--steps", "200")
    assert report["device"]["requested"] == report["device"]["active"] == device
    assert report["device"]["name"]
    heavy = [op for op in report["ops"] if any(h in op for h in HEAVY_OPS)]
    assert heavy, report["ops"]
    if device == "cpu":
        assert not any(op.startswith("Gpu") for op in report["ops"]), report["ops"]
    else:
        # Every op that computes is a Gpu op; only the cost's transfer to the host is not.
        assert all(op.startswith("Gpu") for op in heavy), report["ops"]
        assert {"GpuDot22", "GpuGemm", "GpuElemwise"} <= set(report["ops"])
    # cuDNN is left off (only CUDA runs say so): the same libgpuarray kernels on every node.
    assert not any(op.startswith("GpuDnn") for op in report["ops"]), report["ops"]
    if device.startswith("cuda"):
        assert report["cudnn"]["enabled"] is False and report["cudnn"]["used"] is False, report["cudnn"]
    else:
        assert report["cudnn"] is None


def test_a_train_writes_nothing_to_stderr(device):
    """No warning of Theano's (cuDNN's version, deprecations) or of the package's own: stderr
    is for errors, and a normal run has none."""
    proc = run_cli("train", "--device", device, "--steps", "200", check=0)
    assert proc.stderr == ""


@pytest.mark.slow
@pytest.mark.skipif(DEVICE == "cpu", reason="this env's device is the CPU, whose check is in tests/test_check.py; "
                                            "the opencl and gpu envs run it")
def test_check_passes_on_the_device(device, tmp_path):
    """The mission, through `xor-gpu check`: the seed config (60,000 steps, float32) on the
    device converges, two runs there are bitwise identical, the CPU agrees within tolerance,
    and both agree with the committed reference."""
    out = tmp_path / "check"
    run_cli("check", "--device", device, "--out", out, check=0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and [s["status"] for s in summary["steps"]] == ["passed"] * 5
    assert summary["config"]["steps"] == 60000 and summary["config"]["floatx"] == "float32"
    runs = summary["runs"]
    assert set(runs) == {"cpu", device}
    for run in runs.values():
        assert run["converged"] and run["device"]["active"] == run["device"]["requested"]
    parity = json.loads((out / "parity.json").read_text())
    diff = parity["differences"][device]
    assert parity["passed"] and diff["max_abs_prediction_diff"] <= 1e-4 and diff["max_rel_loss_diff"] <= 1e-3
    for name in ("parity.png", "check.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    print(f"{device} vs cpu: {diff}")


@pytest.mark.skipif(DEVICE == "cpu", reason="the CPU's steps per call are checked in-process, tests/test_train.py")
def test_steps_per_call_train_bitwise_like_one_step_per_call(device, tmp_path):
    """On the device: 3 steps per call (and 2 left over, one step per call) give the same loss
    history, predictions and weights as the seed's loop, and a repeat compiles nothing new."""
    short = ["--device", device, "--steps", "2000", "--lr", "0.3"]
    seed = train_report(tmp_path, *short, "--steps-per-call", "1", name="seed.json")
    first, again = (train_report(tmp_path, *short, "--steps-per-call", "3", name=f"{n}.json") for n in "ab")
    assert seed["converged"] and first["config"]["steps_per_call"] == 3
    for key in ("loss_history", "predictions", "final_weights", "weights_sha256"):
        assert first[key] == seed[key], key
    assert again["new_compiled_modules"] == 0


@pytest.mark.skipif(DEVICE == "cpu", reason="the CPU has no transfers to count")
def test_steps_per_call_wait_for_the_device_once_per_call(device):
    """k steps per call bring their k costs to the host in one transfer: each transfer waits
    for the device, so one per step would cost what k steps per call save."""
    count = ("import sys; from xor_gpu import backend, config, devices, model; "
             "theano = backend.import_theano(devices.device(sys.argv[1]), 'float32'); "
             "train = model.XorModel(theano, config.TrainConfig()).steps_function(3); "
             "print(backend.op_names(train).count('HostFromGpu'))")
    proc = subprocess.run([sys.executable, "-c", count, device], capture_output=True, text=True,
                          env={**os.environ, **wanted_env([devices.device(device)])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-1] == "1", proc.stdout


def test_parity_with_a_tiny_tolerance_fails(device, tmp_path):
    """The tolerance is enforced: cpu and the device differ by ~1e-7 after 2,000 steps at
    lr 0.3 (which converges like the seed config: lr x steps = 600)."""
    if device == "cpu":
        pytest.skip("needs a second device whose float32 arithmetic differs from the CPU's")
    proc = run_cli("parity", "--devices", f"cpu,{device}", "--steps", "2000", "--lr", "0.3",
                   "--atol", "1e-12", "--rtol", "1e-12", "--json", tmp_path / "p.json")
    assert proc.returncode == 5, proc.stderr
    assert proc.stderr.strip().endswith("parity failed: devices differ by more than the tolerance")
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["converged"] is True and report["passed"] is False


def _pytensor_runs():
    """PyTensor's CPU engines for the sweep: their Python must be there (tox -e pytensor)."""
    python = os.environ.get("XOR_GPU_PYTENSOR_PYTHON", "")
    if python and os.access(python, os.X_OK):
        return ["pytensor:cpu", "pytensor-numba:cpu", "pytensor-jax:cpu"]
    message = f"no PyTensor Python ({python or 'XOR_GPU_PYTENSOR_PYTHON is not set'}): run tox -e pytensor first"
    if strict("XOR_GPU_REQUIRE_ENGINES"):
        pytest.fail(f"{message}, and XOR_GPU_REQUIRE_ENGINES=1 (or CI) requires it")
    pytest.skip(f"{message}; set XOR_GPU_REQUIRE_ENGINES=1 (CI does) to make this a failure")


@pytest.mark.skipif(DEVICE == "cpu", reason="a sweep compares the CPU with a second device; the opencl and gpu envs run it")
def test_twenty_seeds_agree_on_every_engine_and_device(device, tmp_path):
    """parity --seeds 0-19 over Theano on the CPU and the device, and PyTensor's three CPU
    backends: each seed converges on every run or on none, and where it converges every run
    agrees with Theano on the CPU within the tolerance. 2,000 steps at lr 0.3 (lr x steps =
    600, as the seed config's 0.01 x 60,000): the seed config's 60,000 steps would take PoCL
    about 10 minutes for 20 seeds."""
    runs = ["theano:cpu", f"theano:{device}", *_pytensor_runs()]
    out = tmp_path / "sweep.json"
    proc = run_cli("parity", "--runs", ",".join(runs), "--seeds", "0-19", "--steps", "2000", "--lr", "0.3",
                   "--json", out, "--plot", tmp_path / "sweep.png", check=0)
    data = json.loads(out.read_text())
    assert data["schema"] == "xor_gpu.parity-seeds/1" and data["seeds"] == list(range(20))
    assert data["devices"] == ["cpu", device, *runs[2:]]
    assert data["passed"] and data["disagree"] == [] and data["beyond_tolerance"] == []
    assert len(data["converged_everywhere"]) + len(data["converged_nowhere"]) == 20
    assert data["converged_everywhere"], "no seed converged: the sweep would prove nothing"
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    print(proc.stdout)
