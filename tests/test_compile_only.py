"""`xor-gpu doctor --device cuda --compile-only`: every kernel of the seed graph compiled by
the real NVRTC through libgpuarray's own code path, on xor_gpu's stand-in driver, without a
GPU, for the architecture and driver of the nodes it is for. The tests marked cuda_compile
need NVIDIA's NVRTC, cuBLAS and nvcc wheels (the cuda extra) and run in the gpu env; the
matrix's other wheels (NVRTC 12.9, ptxas 12.9 and 13.0) are installed by the tests into a
folder of their own (tests/requirements-cuda-matrix.txt); the bad-input tests need nothing."""
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import cuda_stand_ins
from xor_gpu import compile_only as compile_only_module, cuda_libs, cuda_standin
from xor_gpu.results.compile_only import SCHEMA
from xor_gpu.private_folder import CACHE_HOME_FIX, UnsafeFolder
from xorlib import one_line_error, run_cli, strict, without_cuda_gpu

cuda_compile = pytest.mark.cuda_compile
SEED_GRAPH_OPS = {"GpuDot22", "GpuGemm", "GpuElemwise", "GpuCAReduceCuda"}
MATRIX_WHEELS = pathlib.Path(__file__).parent / "requirements-cuda-matrix.txt"
# sha256 over the sha256 of each PTX module, in compilation order, of the seed graph's kernels
# for sm_90, as compile-only made them before xor_gpu's NVRTC front existed (with the same
# NVIDIA wheels): a Hopper run's kernels and options are unchanged by it. NVRTC 13.0.88 is the
# version of the CUDA 13.0 toolkit the H200 nodes trained with (docs/gpu-validation.md).
HOPPER_PTX = {"12.4": "c274b55ea7e0239f47db3d79e8f3ba73af20c68473eac276b37309adee1bc656",
              "13.0": "f35a0b4700f773a699ea3642a3f15a5b9c7aaa4e5e3b4b4e29c34d7e3149189e"}


def compile_only(tmp_path, arch, status, env=None, driver=None):
    path = tmp_path / f"compile-only-{arch}.json"
    proc = run_cli("doctor", "--device", "cuda", "--compile-only", "--arch", arch, "--json", path,
                   *(["--driver", driver] if driver else []), env=env)
    assert proc.returncode == status, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    with open(path, encoding="utf-8") as f:
        return json.load(f), proc


def ptx_digest(data):
    """sha256 over the digests of the report's PTX modules, in compilation order."""
    modules = {k["module"]: k["ptx_sha256"] for k in data["kernels"]}
    return hashlib.sha256("\n".join(modules[m] for m in sorted(modules)).encode()).hexdigest()


def site_nvidia():
    """This env's nvidia/ folder of NVIDIA's wheels (the cuda extra)."""
    return pathlib.Path(importlib.util.find_spec("nvidia").submodule_search_locations[0])


@pytest.fixture(scope="session")
def matrix(tmp_path_factory):
    """The nvidia/ folder of the matrix's other wheels, installed once per version of their
    requirements into XOR_GPU_CUDA_MATRIX (tox: .tox/cuda-matrix), with pip, hash-checked. They
    come from PyPI: without it (an image run without network) this skips, saying so, unless
    XOR_GPU_REQUIRE_CUDA_MATRIX=1 or CI=true make that a failure."""
    digest = hashlib.sha256(MATRIX_WHEELS.read_bytes()).hexdigest()[:12]
    root = pathlib.Path(os.environ.get("XOR_GPU_CUDA_MATRIX") or tmp_path_factory.mktemp("cuda-matrix"))
    folder = root / digest
    if not folder.is_dir():
        tmp = root / f".{digest}.tmp{os.getpid()}"
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
                               "--target", str(tmp), "-r", str(MATRIX_WHEELS)], capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            why = f"the matrix's NVIDIA wheels did not install: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
            if strict("XOR_GPU_REQUIRE_CUDA_MATRIX"):
                pytest.fail(why)
            pytest.skip(f"{why}; set XOR_GPU_REQUIRE_CUDA_MATRIX=1 to make this a failure")
        os.replace(tmp, folder)  # whole or not at all: a second session finds it ready
    return folder / "nvidia"


@pytest.fixture(scope="module")
def sm90(tmp_path_factory):
    return compile_only(tmp_path_factory.mktemp("sm90"), "sm_90", 0)[0]


def assert_every_kernel_compiled_and_assembled(data, arch, nvrtc):
    """Every kernel of the seed graph compiled by NVRTC `nvrtc` for the whole `arch` and
    assembled by a ptxas at least as new; nothing else went wrong."""
    assert data["schema"] == SCHEMA and data["executed"] is False and data["problems"] == []
    assert data["device"] == f"compile-only {arch}"
    assert data["nvrtc"]["version"] == nvrtc
    assert tuple(map(int, data["ptxas"]["version"].split(".")[:2])) >= tuple(map(int, nvrtc.split(".")))
    assert SEED_GRAPH_OPS <= set(data["ops"]) and len(data["kernels"]) == 28
    for kernel in data["kernels"]:
        assert kernel["target"] == arch, kernel
        assert kernel["ptx_bytes"] > 0 and 0 < kernel["registers"] <= 255, kernel


@cuda_compile
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])  # sm_70: test_a_volta_offered_nvrtc_13_and_12_gets_12
def test_every_kernel_of_the_seed_graph_compiles_for(arch, tmp_path, sm90):
    data = sm90 if arch == "sm_90" else compile_only(tmp_path, arch, 0)[0]
    assert_every_kernel_compiled_and_assembled(data, arch, "12.4")
    assert data["libgpuarray_arch"] == f"compute_{arch[3:]}" and data["nvrtc_arch"] is None
    assert data["ptxas"]["version"].startswith("12.4.")
    # No driver here and none given: the rule checked the architecture only, and says so.
    assert data["driver"] == {"cuda": None, "from": compile_only_module.UNKNOWN_DRIVER}
    names = {k["name"] for k in data["kernels"]}
    assert {"elem", "kernel_reduce_ccontig", "sgemv"} <= names, names
    for kernel in data["kernels"]:
        assert kernel["spill_stores"] >= 0 and kernel["spill_loads"] >= 0, kernel
    # The training call went through the stand-in: kernels launched, GEMMs handed to cuBLAS.
    # One step (docs/gpu-validation.md): 5 elementwise kernels and the cost's sum; then the
    # prediction's 2 sigmoids.
    assert data["launches_recorded"] == {"elem": 5 + 2, "kernel_reduce_ccontig": 1}
    assert "cublasSgemm_v2" in data["cublas"]["calls"]
    assert data["cublas"]["names"]["missing"] == [] and "cublasSgemm_v2" in data["cublas"]["names"]["resolved"]
    # As a run: cuDNN off, so the cost's sum is libgpuarray's own reduction on every node.
    assert data["cudnn"]["enabled"] is False and data["cudnn"]["used"] is False
    assert not any(op.startswith("GpuDnn") for op in data["ops"])


def cuda13(matrix):
    """A node's CUDA 13.0: NVRTC 13.0 first (the cuda extra's wheel), ptxas 13.0 in CUDA_HOME."""
    return {"XOR_GPU_CUDA_LIBS": str(site_nvidia() / "cu13" / "lib"), "CUDA_HOME": str(matrix / "cu13")}


def cuda129(matrix):
    """A node's CUDA 12.9: NVRTC 12.9 first, its ptxas beside it (nvidia/cuda_nvcc/bin)."""
    return {"XOR_GPU_CUDA_LIBS": str(matrix / "cuda_nvrtc" / "lib")}


def cuda_extra(matrix):
    """The cuda extra alone (NVRTC 12.4 first, then 13.0), and ptxas 13.0 in CUDA_HOME."""
    return {"CUDA_HOME": str(matrix / "cu13")}


# The matrix: (arch, the node's driver, what it offers first, the NVRTC the rule must choose).
MATRIX = [
    ("sm_75", "580.65.06", cuda13, "13.0"),
    ("sm_90", "580.65.06", cuda13, "13.0"),
    ("sm_100", "575.51.03", cuda129, "12.9"),
    ("sm_120", "575.51.03", cuda129, "12.9"),
    ("sm_100", "13.0", cuda_extra, "13.0"),
    ("sm_120", "13.0", cuda_extra, "13.0"),
]


@pytest.fixture(scope="session")
def matrix_run(matrix, tmp_path_factory):
    """The report of one cell of MATRIX, run once in the session."""
    done = {}

    def run(arch, driver, offered):
        if (arch, driver, offered) not in done:
            done[arch, driver, offered] = compile_only(tmp_path_factory.mktemp(arch), arch, 0, env=offered(matrix),
                                                       driver=driver)[0]
        return done[arch, driver, offered]
    return run


@cuda_compile
@pytest.mark.parametrize("arch, driver, offered, nvrtc", MATRIX, ids=[f"{a}-nvrtc{n}-{o.__name__}"
                                                                      for a, _, o, n in MATRIX])
def test_every_kernel_compiles_and_assembles_across_the_matrix(matrix_run, arch, driver, offered, nvrtc):
    data = matrix_run(arch, driver, offered)
    assert_every_kernel_compiled_and_assembled(data, arch, nvrtc)
    assert data["driver"]["from"] == f"--driver {driver}"
    asked = f"compute_{arch[3:5]}"  # what libgpuarray 0.7.6 passes: cut short from compute_1X0 on
    if arch in ("sm_100", "sm_120"):
        assert data["libgpuarray_arch"] == asked and data["nvrtc_options"] == [f"-arch {asked}"]
        assert data["nvrtc_arch"] == {"asked": asked, "compiled_for": f"compute_{arch[3:]}", "compilations": 28}
    else:
        assert data["libgpuarray_arch"] == f"compute_{arch[3:]}" and data["nvrtc_arch"] is None
    if offered is cuda_extra:  # the cuda extra's NVRTC 12.4 comes first, and cannot
        assert any("NVRTC 12.4 cannot compile for" in note for note in data["cuda_libs_notes"]), data


@cuda_compile
def test_a_hopper_runs_kernels_and_options_are_unchanged(sm90, matrix_run):
    """The NVRTC front passes every option of a GPU below compute capability 10 on as given (and
    a run there does not even load it: tests/test_cuda_libs.py): the PTX of every kernel for
    sm_90 is what it was before the front, with NVRTC 12.4 and with the H200's NVRTC 13.0."""
    assert sm90["nvrtc_options"] == ["-arch compute_90"] and ptx_digest(sm90) == HOPPER_PTX["12.4"]
    data = matrix_run(*MATRIX[1][:3])
    assert data["nvrtc"]["version"] == "13.0" and data["nvrtc_options"] == ["-arch compute_90"]
    assert data["nvrtc_arch"] is None and ptx_digest(data) == HOPPER_PTX["13.0"]


@cuda_compile
def test_the_rules_recorded_answers_are_the_real_wheels(matrix):
    """What tests/test_cuda_libs.py's matrix of the rule assumes each NVRTC compiles for is what
    NVIDIA's wheels answer (asked in a process of its own: loaded here, the real libraries would
    answer for the stand-ins of later tests, which share their sonames)."""
    folders = [site_nvidia() / "cuda_nvrtc" / "lib", site_nvidia() / "cu13" / "lib", matrix / "cuda_nvrtc" / "lib"]
    code = ("import json, sys\nfrom xor_gpu import cuda_search\n"
            "print(json.dumps([c._asdict() for f in sys.argv[1:] for c in cuda_search.read_candidates(f)[0]]))")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, folders)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    answers = {tuple(c["version"]): tuple(c["archs"]) for c in json.loads(proc.stdout)}
    assert answers == {v: cuda_stand_ins.NVRTC_ARCHS[v] for v in ((12, 4), (13, 0), (12, 9))}


@cuda_compile
def test_a_volta_offered_nvrtc_13_and_12_gets_12(tmp_path, matrix):
    data = compile_only(tmp_path, "sm_70", 0, env=cuda13(matrix), driver="580.65.06")[0]
    assert_every_kernel_compiled_and_assembled(data, "sm_70", "12.4")
    assert f"{site_nvidia() / 'cu13' / 'lib' / 'libnvrtc.so.13'}: NVRTC 13.0 cannot compile for sm_70 (Volta): " \
           "dropped in CUDA 13, skipped" in data["cuda_libs_notes"]
    # ptxas 13.0 (CUDA_HOME) is newer than NVRTC 12.4, but CUDA 13 dropped Volta: ptxas 12.4 it is.
    assert data["ptxas"]["version"].startswith("12.4.")


@cuda_compile
def test_a_volta_offered_only_nvrtc_13_exits_3_saying_why(tmp_path):
    """A machine whose NVRTC is CUDA 13.0's alone (the real wheel), its cuBLAS 12.4: nothing
    compiles for sm_70, and the error says why and what to get, before anything runs. (The
    machine is the test's, so the command runs as the CLI would, in a process of its own.)"""
    nvidia = site_nvidia()
    code = f"""
import sys
from xor_gpu import compile_only, devices
from xor_gpu.cuda_search import Host
from xor_gpu.errors import XorGpuError
machine = Host(environ={{"PATH": "", "XOR_GPU_CUDA_LIBS": "{nvidia / 'cu13' / 'lib'}:{nvidia / 'cublas' / 'lib'}"}},
               sys_path=[], ldconfig=[], usr_local="{tmp_path}", driver_folders=())
try:
    compile_only.main(devices.DEFAULT_CUDA, "sm_70", "{tmp_path / 'r.json'}", "580.65.06", host=machine)
except XorGpuError as exc:
    print(f"xor-gpu: error: {{exc}}", file=sys.stderr)
    sys.exit(exc.exit_status)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    one_line_error(proc, 3, f"{nvidia / 'cu13' / 'lib' / 'libnvrtc.so.13'}: NVRTC 13.0 cannot compile for sm_70 "
                            "(Volta): dropped in CUDA 13, skipped: sm_70 (Volta) needs a CUDA 12 NVRTC")
    assert not (tmp_path / "r.json").exists()


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
    from xor_gpu.cuda_standin.record import cublas_names

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


@pytest.mark.parametrize("option", ["--arch", "--driver"])
def test_arch_and_driver_need_compile_only(option):
    value = "sm_90" if option == "--arch" else "13.0"
    one_line_error(run_cli("doctor", "--device", "cuda", option, value), 2, f"{option} needs --compile-only")


def test_a_bad_driver_exits_2(tmp_path):
    proc = run_cli("doctor", "--device", "cuda", "--compile-only", "--arch", "sm_90", "--driver", "600.1",
                   "--json", tmp_path / "r.json")
    one_line_error(proc, 2, "--driver '600.1' is neither a CUDA version")
    assert not (tmp_path / "r.json").exists()


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
