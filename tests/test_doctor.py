"""`xor-gpu doctor` on this machine: real libraries, real OpenCL, real device probes. What it
found is read from its JSON report; the printed text is checked only to name it."""
from xorlib import cli_report, without_cuda_gpu
from xor_gpu import cuda_search, host
from xor_gpu.doctor import opencl_devices
from xor_gpu.results.doctor import Findings


def doctor(tmp_path, *args, check=0):
    return cli_report(tmp_path, "doctor", *args, name="doctor.json", check=check)


def test_doctor_reports_the_stack(tmp_path):
    found, proc = doctor(tmp_path)
    assert found["numpy"] == "1.23.5" and found["theano"] == "1.0.5"
    assert found["compiledir"] in proc.stdout
    for name in ("libOpenCL.so", "libnvrtc.so", "libcublas.so", "libcuda.so"):
        assert name in found["libraries"] and name in proc.stdout


def test_doctor_reports_the_host_as_host_introspection_sees_it(tmp_path):
    found, proc = doctor(tmp_path)
    assert found["cpu"] == host.cpu_name()
    assert found["blas"] == host.installed_blas().to_dict() and found["blas"]["version"].startswith("OpenBLAS ")
    assert found["blas"]["library"] in proc.stdout


def test_doctor_says_whether_runs_use_cudnn_and_what_it_finds(tmp_path):
    found, proc = doctor(tmp_path)
    library, version = cuda_search.find_cudnn()
    assert found["cudnn"] == {"enabled": False, "library": library, "version": version}
    assert "Theano uses it: no (dnn.enabled)" in proc.stdout


def test_doctor_names_the_openblas_kernels_runs_ask_for(tmp_path):
    found, proc = doctor(tmp_path)
    assert found["blas"]["kernels"] == host.openblas_kernels().to_dict()
    assert f"blas kernels    {found['blas']['kernels']['family'] or 'as OpenBLAS detects'}" in proc.stdout


def test_doctor_says_cpu_is_usable(tmp_path):
    found, _ = doctor(tmp_path, "--device", "cpu")
    assert found["device"] == {"name": "cpu", "error": None}


@without_cuda_gpu
def test_doctor_explains_a_missing_gpu(tmp_path):
    found, proc = doctor(tmp_path, "--device", "cuda", check=3)
    assert found["device"]["name"] == "cuda" and found["device"]["error"]
    assert found["cuda_driver"] is None and found["cuda_gpus"] == []
    problems = {p.what: p.fix for p in Findings.from_dict(found).advice()}
    assert "no NVIDIA driver (libcuda.so.1)" in problems
    assert f"problem: no NVIDIA driver (libcuda.so.1)\n    fix: {problems['no NVIDIA driver (libcuda.so.1)']}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("xor-gpu: error: device cuda is not usable")


def test_doctor_lists_opencl_devices_as_the_icd_loader_sees_them(tmp_path):
    found, proc = doctor(tmp_path)
    assert found["opencl_devices"] == [f"{p}: {d}" for p, d in opencl_devices()]
    for name in found["opencl_devices"]:
        assert name in proc.stdout
