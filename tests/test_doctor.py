"""`xor-gpu doctor` on this machine: real libraries, real OpenCL, real device probes."""
import json


from xorlib import run_cli, without_cuda_gpu
from xor_gpu.doctor import opencl_devices


def test_doctor_reports_the_stack(tmp_path):
    proc = run_cli("doctor", "--json", tmp_path / "d.json", check=0)
    found = json.loads((tmp_path / "d.json").read_text())
    assert found["numpy"] == "1.23.5" and found["theano"] == "1.0.5"
    assert found["compiledir"] in proc.stdout
    for name in ("libOpenCL.so", "libnvrtc.so", "libcublas.so", "libcuda.so"):
        assert name in found["libraries"] and name in proc.stdout


def test_doctor_says_cpu_is_usable():
    proc = run_cli("doctor", "--device", "cpu", check=0)
    assert "device cpu" in proc.stdout and "usable" in proc.stdout and "NOT usable" not in proc.stdout


@without_cuda_gpu
def test_doctor_explains_a_missing_gpu():
    proc = run_cli("doctor", "--device", "cuda", check=3)
    assert "device cuda     NOT usable" in proc.stdout
    assert "problem: no NVIDIA driver" in proc.stdout and "fix:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_doctor_lists_opencl_devices_as_the_icd_loader_sees_them():
    names = [f"{p}: {d}" for p, d in opencl_devices()]
    proc = run_cli("doctor", check=0)
    for name in names:
        assert name in proc.stdout
    if not names:
        assert "opencl          none" in proc.stdout
