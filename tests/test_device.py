"""The device under test (THEANO_FLAGS device=..., set per tox env) against the CPU.

In CI these run for real on OpenCL (PoCL on the CPU), which takes libgpuarray's GPU code
path: Gpu ops, transfers, kernels. On a CUDA machine the gpu env runs the same tests.
"""
import json

import pytest

from xorlib import DEVICE, run_cli, train_report

pytestmark = pytest.mark.device
HEAVY = ("Dot22", "Gemm", "Elemwise", "CAReduce")


def test_graph_runs_on_the_requested_device(device, tmp_path):
    report = train_report(tmp_path, "--device", device, "--steps", "200")
    assert report["device"]["requested"] == report["device"]["active"] == device
    assert report["device"]["name"]
    heavy = [op for op in report["ops"] if any(h in op for h in HEAVY)]
    assert heavy, report["ops"]
    if device == "cpu":
        assert not any(op.startswith("Gpu") for op in report["ops"]), report["ops"]
    else:
        # Every op that computes is a Gpu op; only the cost's transfer to the host is not.
        assert all(op.startswith("Gpu") for op in heavy), report["ops"]
        assert {"GpuDot22", "GpuGemm", "GpuElemwise"} <= set(report["ops"])


def test_two_runs_on_the_device_are_bit_identical(device, tmp_path):
    a = train_report(tmp_path, "--device", device, "--steps", "2000", name="a.json")
    b = train_report(tmp_path, "--device", device, "--steps", "2000", name="b.json")
    assert a["predictions"] == b["predictions"]
    assert a["loss_history"] == b["loss_history"]


@pytest.mark.slow
@pytest.mark.skipif(DEVICE == "cpu", reason="parity compares the CPU with another device and this env's "
                                            "device is the CPU; the opencl and gpu envs run it")
def test_parity_with_cpu_for_the_seed_config(device, tmp_path):
    """The mission: the full seed config (60,000 steps, float32) on cpu and on the device."""
    out, png = tmp_path / "parity.json", tmp_path / "parity.png"
    proc = run_cli("parity", "--devices", f"cpu,{device}", "--json", out, "--plot", png, check=0)
    report = json.loads(out.read_text())
    assert report["passed"] and report["converged"] and report["failures"] == {}
    assert report["config"]["steps"] == 60000 and report["config"]["floatx"] == "float32"
    diff = report["differences"][device]
    assert diff["max_abs_prediction_diff"] <= 1e-4 and diff["max_rel_loss_diff"] <= 1e-3
    for run in report["runs"].values():
        assert run["converged"] and run["device"]["active"] == run["device"]["requested"]
    assert f"{device} vs cpu: max |prediction diff|" in proc.stdout and "parity: PASS" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


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
