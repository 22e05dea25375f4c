"""`xor-gpu doctor --device cuda --compile-only`: every kernel of the seed graph compiled by
the real NVRTC through libgpuarray's own code path, on xor_gpu's stand-in driver, without a
GPU. The tests marked cuda_compile need NVIDIA's NVRTC, cuBLAS and nvcc wheels (the cuda
extra) and run in the gpu env; the bad-input tests need nothing."""
import json
import os

import pytest

import cuda_stand_ins
from xor_gpu import cuda_libs, cuda_standin
from xor_gpu.compile_only import SCHEMA
from xor_gpu.private_folder import CACHE_HOME_FIX, UnsafeFolder
from xorlib import one_line_error, run_cli, without_cuda_gpu

cuda_compile = pytest.mark.cuda_compile
SEED_GRAPH_OPS = {"GpuDot22", "GpuGemm", "GpuElemwise", "GpuCAReduceCuda"}


def compile_only(tmp_path, arch, status, env=None):
    path = tmp_path / f"compile-only-{arch}.json"
    proc = run_cli("doctor", "--device", "cuda", "--compile-only", "--arch", arch, "--json", path, env=env)
    assert proc.returncode == status, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    with open(path, encoding="utf-8") as f:
        return json.load(f), proc


@pytest.fixture(scope="module")
def sm90(tmp_path_factory):
    return compile_only(tmp_path_factory.mktemp("sm90"), "sm_90", 0)[0]


@cuda_compile
@pytest.mark.parametrize("arch", ["sm_70", "sm_80", "sm_90"])
def test_every_kernel_of_the_seed_graph_compiles_for(arch, tmp_path, sm90):
    data = sm90 if arch == "sm_90" else compile_only(tmp_path, arch, 0)[0]
    assert data["schema"] == SCHEMA and data["executed"] is False
    assert data["device"] == f"compile-only {arch}"
    assert data["libgpuarray_arch"] == f"compute_{arch[3:]}"
    assert data["nvrtc"]["version"] == "12.4" and data["ptxas"]["version"].startswith("12.4.")
    assert SEED_GRAPH_OPS <= set(data["ops"])
    names = {k["name"] for k in data["kernels"]}
    assert {"elem", "kernel_reduce_ccontig", "sgemv"} <= names, names
    for kernel in data["kernels"]:
        assert kernel["target"] == arch, kernel
        assert kernel["ptx_bytes"] > 0 and 0 < kernel["registers"] <= 255, kernel
        assert kernel["spill_stores"] >= 0 and kernel["spill_loads"] >= 0, kernel
    # The training call went through the stand-in: kernels launched, GEMMs handed to cuBLAS.
    # One step (docs/gpu-validation.md): 5 elementwise kernels and the cost's sum; then the
    # prediction's 2 sigmoids.
    assert data["launches_recorded"] == {"elem": 5 + 2, "kernel_reduce_ccontig": 1}
    assert "cublasSgemm_v2" in data["cublas"]["calls"]
    assert data["cublas"]["names"]["missing"] == [] and "cublasSgemm_v2" in data["cublas"]["names"]["resolved"]
    assert data["problems"] == []
    # As a run: cuDNN off, so the cost's sum is libgpuarray's own reduction on every node.
    assert data["cudnn"]["enabled"] is False and data["cudnn"]["used"] is False
    assert not any(op.startswith("GpuDnn") for op in data["ops"])


@cuda_compile
def test_sm_100_is_refused_because_libgpuarray_truncates_its_architecture(tmp_path):
    data, proc = compile_only(tmp_path, "sm_100", 5)
    one_line_error(proc, 5, "cuts the architecture name for compute capability 10.0 to 'compute_10'")
    assert data["libgpuarray_arch"] == "compute_10" and data["executed"] is False
    assert "NVRTC_ERROR_INVALID_OPTION" in data["problems"][0]


@cuda_compile
def test_a_kernel_source_nvrtc_rejects_exits_5_with_the_compiler_log(tmp_path):
    real = os.path.realpath(cuda_libs.resolve().nvrtc.path)
    cuda_stand_ins.nvrtc_planting(tmp_path / "nvrtc", real, "kernel_reduce_ccontig", "#error planted by the test")
    data, proc = compile_only(tmp_path, "sm_90", 5, env={"XOR_GPU_CUDA_LIBS": str(tmp_path / "nvrtc")})
    one_line_error(proc, 5, "planted by the test")
    assert data["nvrtc"]["path"] == str(tmp_path / "nvrtc" / "libnvrtc.so.12")
    assert "kernel_reduce_ccontig" not in {k["name"] for k in data["kernels"]}


@cuda_compile
def test_a_cublas_without_one_name_exits_5_naming_it(tmp_path):
    names = [n for n, required in _cublas_names() if n != "cublasSgemmBatched"]
    cuda_stand_ins.cublas(tmp_path / "cublas", 12, 4, 5, names=names)
    data, proc = compile_only(tmp_path, "sm_90", 5, env={"XOR_GPU_CUDA_LIBS": str(tmp_path / "cublas")})
    one_line_error(proc, 5, "lacks cublasSgemmBatched, which libgpuarray 0.7.6 needs")
    assert data["cublas"]["names"]["missing"] == ["cublasSgemmBatched"]
    assert data["kernels"], "the kernels still compiled: only the cuBLAS check failed"


def _cublas_names():
    from xor_gpu.compile_only import cublas_names

    return cublas_names(cuda_standin.build()["libcublas.so"])


@cuda_compile
@without_cuda_gpu
def test_a_real_run_that_finds_the_stand_in_refuses(tmp_path):
    folder = tmp_path / "standin"
    folder.mkdir()
    driver = cuda_standin.build()["libcuda.so"]
    (folder / "libcuda.so").symlink_to(driver)
    proc = run_cli("train", "--device", "cuda", "--steps", "1", "--json", tmp_path / "r.json",
                   env={"LD_LIBRARY_PATH": str(folder)})
    one_line_error(proc, 3, f"stand-in of 'xor-gpu doctor --compile-only' is loaded ({driver})")
    assert not (tmp_path / "r.json").exists()


@cuda_compile
@pytest.mark.parametrize("command", ["compare", "check"])
def test_a_compile_only_report_is_not_evidence(command, tmp_path, sm90):
    path = tmp_path / "compile-only.json"
    path.write_text(json.dumps(sm90))
    args = [path] if command == "compare" else ["--device", "cpu", "--out", tmp_path / "out", "--reference", path]
    proc = run_cli(command, *args)
    one_line_error(proc, 2, f"unknown schema '{SCHEMA}'")
    assert not (tmp_path / "out").exists()


# --- bad input: no NVIDIA library needed --------------------------------------------------

@pytest.mark.parametrize("arch", ["sm_99", "sm_9", "compute_90", "90", "sm_90a", ""])
def test_a_bad_arch_exits_2(arch, tmp_path):
    proc = run_cli("doctor", "--device", "cuda", "--compile-only", "--arch", arch, "--json", tmp_path / "r.json")
    one_line_error(proc, 2, "is not an NVIDIA GPU architecture")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("device", ["cpu", "opencl0:0"])
def test_compile_only_needs_a_cuda_device(device, tmp_path):
    proc = run_cli("doctor", "--device", device, "--compile-only", "--json", tmp_path / "r.json")
    one_line_error(proc, 2, f"it needs --device cuda, not {device}")
    assert not (tmp_path / "r.json").exists()


def test_arch_needs_compile_only():
    one_line_error(run_cli("doctor", "--device", "cuda", "--arch", "sm_90"), 2, "--arch needs --compile-only")


def test_the_stand_in_is_seen_in_a_process_map(tmp_path):
    maps = tmp_path / "maps"
    driver = cuda_standin.build()["libcuda.so"]
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
                    f"7f02-7f03 r-xp 00000000 08:01 43 {driver}\n")
    assert cuda_standin.loaded(str(maps)) == driver
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libcuda.so.1\n")
    assert cuda_standin.loaded(str(maps)) is None


def test_the_stand_in_is_not_built_in_another_users_folder(common, nobody, tmp_path):
    """The compile-only child loads the stand-in from its cache folder: one another user owns is
    refused before anything is built there; one's own is made private."""
    theirs = common / "standin"
    nobody.mkdir(theirs, 0o755)
    with pytest.raises(UnsafeFolder) as refused:
        cuda_standin.build(str(theirs))
    assert refused.value.exit_status == 3 and os.listdir(theirs) == []
    assert str(refused.value) == (f"cache folder {theirs} is not yours (owner nobody, mode 0755): {CACHE_HOME_FIX}, "
                                  f"or remove {theirs}")
    built = cuda_standin.build(str(tmp_path / "standin"))
    assert set(built) == set(cuda_standin.SOURCES) and (tmp_path / "standin").stat().st_mode & 0o777 == 0o700


def test_ptxas_is_found_beside_the_nvrtc_of_a_toolkit(tmp_path, monkeypatch):
    from xor_gpu import ptxas

    monkeypatch.setattr("sys.path", [])
    monkeypatch.setenv("PATH", "")
    for name in ("lib64/libnvrtc.so.12", "bin/ptxas"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "bin/ptxas").chmod(0o755)
    assert ptxas.find(str(tmp_path / "lib64/libnvrtc.so.12")) == str(tmp_path / "bin/ptxas")


def test_ptxas_figures_are_read_per_kernel():
    from xor_gpu import ptxas

    log = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'elem' for 'sm_90'
ptxas info    : Function properties for elem
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 18 registers, 380 bytes cmem[0]
ptxas info    : Compiling entry function 'kernel_reduce_11' for 'sm_90'
ptxas info    : Function properties for kernel_reduce_11
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 22 registers, 392 bytes cmem[0]
"""
    assert ptxas.parse(log) == {
        "elem": {"stack_bytes": 8, "spill_stores": 4, "spill_loads": 12, "registers": 18},
        "kernel_reduce_11": {"stack_bytes": 0, "spill_stores": 0, "spill_loads": 0, "registers": 22},
    }
