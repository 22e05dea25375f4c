"""The CUDA library policy: where NVRTC, cuBLAS and cuDNN are looked for and what each is
(xor_gpu/cuda_search.py), which are chosen for the driver, and the folder of links libgpuarray
loads them through (xor_gpu/cuda_libs.py).

Without a GPU this is still fully testable: `choose` is pure, and stand-in libraries built
with gcc (tests/cuda_stand_ins.py) answer the version queries through ctypes and prove the
folder, the unversioned names and the $ORIGIN lookup. In the gpu env the real pinned NVIDIA
wheels are wired and loaded (loading NVRTC and cuBLAS needs no GPU).
"""
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap

import pytest

import cuda_stand_ins as stand_in
from xorlib import DEVICE, run_cli
from xor_gpu import cuda_libs, cuda_search, doctor, render_doctor
from xor_gpu.cuda_search import Candidate, Host
from xor_gpu.errors import DeviceError
from xor_gpu.private_folder import CACHE_HOME_FIX, UnsafeFolder
from xor_gpu.results.doctor import CudaLibs

# Old enough for the driver of any GPU this project can meet: the tests that use this
# machine's real driver (if any) accept them.
CU12 = ((12, 0), (12, 0, 2))


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """Folders shaped like NVIDIA's wheels: CUDA 13 (nvidia/cu13/lib, both libraries) and
    CUDA 12 (nvidia/cuda_nvrtc/lib, nvidia/cublas/lib), their NVRTCs answering what the real
    ones compile for; drivers of CUDA 12.4 and 13.0 without a GPU, and of CUDA 13.0 with a
    V100 (sm_70), an H200 (sm_90), a B200 (sm_100), or a V100 and a B200."""
    base = tmp_path_factory.mktemp("cuda")
    site = base / "site"
    nvidia = site / "nvidia"
    stand_in.nvrtc(nvidia / "cu13" / "lib", 13, 0, ARCHS[13, 0])
    stand_in.cublas(nvidia / "cu13" / "lib", 13, 0, 0)
    stand_in.nvrtc(nvidia / "cuda_nvrtc" / "lib", *CU12[0], ARCHS[CU12[0]])
    stand_in.cublas(nvidia / "cublas" / "lib", *CU12[1])
    drivers = {"driver-12.4": (12, 4, ()), "driver-13.0": (13, 0, ()), "v100": (13, 0, [(7, 0)]),
               "h200": (13, 0, [(9, 0)]), "b200": (13, 0, [(10, 0)]), "v100+b200": (13, 0, [(7, 0), (10, 0)])}
    for name, (major, minor, gpus) in drivers.items():
        stand_in.driver(base / name, major, minor, gpus)
    return {"base": base, "site": site, "cu13": str(nvidia / "cu13" / "lib"),
            "cu12": [str(nvidia / "cuda_nvrtc" / "lib"), str(nvidia / "cublas" / "lib")],
            **{name: str(base / name) for name in drivers}}


def host(tmp_path, environ=None, **kw):
    """A machine with nothing but what the test gives: no toolkit, no wheels, no driver."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return Host(**{"environ": {"PATH": str(empty), **(environ or {})}, "sys_path": [], "ldconfig": [],
                   "usr_local": str(empty), "driver_folders": (), **kw})


# --- choose: plain data ----------------------------------------------------------------

ARCHS = stand_in.NVRTC_ARCHS


def nvrtc(major, minor):
    name = f"n{major}{minor}"
    return Candidate("nvrtc", f"/{name}", f"/{name}/libnvrtc.so.{major}", (major, minor), ARCHS[major, minor])


def cublas(*version):
    name = f"b{version[0]}{version[1]}"
    return Candidate("cublas", f"/{name}", f"/{name}/libcublas.so.{version[0]}", version)


N13, N129, N128, N124, N120 = nvrtc(13, 0), nvrtc(12, 9), nvrtc(12, 8), nvrtc(12, 4), nvrtc(12, 0)
B13, B128, B124 = cublas(13, 0, 0), cublas(12, 8, 4), cublas(12, 4, 5)


@pytest.mark.parametrize("candidates, driver, nvrtc, cublas, notes", [
    # Newer than the driver: skipped, each with its reason; the next one in order is taken.
    ([N13, B13, N124, B124], (12, 4), N124, B124,
     ["/n130/libnvrtc.so.13: NVRTC 13.0 is newer than the driver's CUDA 12.4, skipped",
      "/b130/libcublas.so.13: cuBLAS 13.0.0 is newer than the driver's CUDA major 12, skipped"]),
    # NVRTC compares major.minor, cuBLAS the major only.
    ([N128, B128, N124], (12, 4), N124, B128,
     ["/n128/libnvrtc.so.12: NVRTC 12.8 is newer than the driver's CUDA 12.4, skipped"]),
    # The order decides, not the version: the first usable one wins even when older.
    ([N120, N124, B124], (12, 8), N120, B124, []),
    ([N124, B124], (12, 4), N124, B124, []),  # equal to the driver's: usable
    ([N13, B13], (13, 1), N13, B13, []),
    # Nothing the driver supports: none chosen, every one found says why.
    ([N13, B13], (12, 4), None, None,
     ["/n130/libnvrtc.so.13: NVRTC 13.0 is newer than the driver's CUDA 12.4, skipped",
      "/b130/libcublas.so.13: cuBLAS 13.0.0 is newer than the driver's CUDA major 12, skipped"]),
    ([], (12, 4), None, None, []),
    ([N124], (12, 4), N124, None, []),
    # No driver (no GPU here): the first of each, unchecked against a driver, and a note says so.
    ([N13, B13, N124, B124], None, N13, B13, [cuda_libs.DRIVER_UNKNOWN]),
])
def test_choose(candidates, driver, nvrtc, cublas, notes):
    assert cuda_libs.choose(candidates, driver) == (nvrtc, cublas, notes)


@pytest.mark.parametrize("candidates, driver, gpus, nvrtc, notes", [
    # A V100 on a driver of CUDA 13.0 whose first NVRTC is CUDA 13's: the CUDA 12 one after it.
    ([N13, N124], (13, 0), [(7, 0)], N124,
     ["/n130/libnvrtc.so.13: NVRTC 13.0 cannot compile for sm_70 (Volta): dropped in CUDA 13, skipped"]),
    # ... and offered only CUDA 13's: nothing, saying why.
    ([N13], (13, 0), [(7, 0)], None,
     ["/n130/libnvrtc.so.13: NVRTC 13.0 cannot compile for sm_70 (Volta): dropped in CUDA 13, skipped"]),
    # Blackwell: NVRTC 12.4 predates it; 12.8 does not know sm_103.
    ([N124, N13], (13, 0), [(10, 0)], N13,
     ["/n124/libnvrtc.so.12: NVRTC 12.4 cannot compile for sm_100 (Blackwell): newer than it, skipped"]),
    ([N128, N129], (12, 9), [(10, 3)], N129,
     ["/n128/libnvrtc.so.12: NVRTC 12.8 cannot compile for sm_103 (Blackwell): not among its architectures, "
      "skipped"]),
    # The driver first: NVRTC 13.0 compiles for sm_100 but a driver of CUDA 12.9 cannot run its PTX.
    ([N13, N129], (12, 9), [(10, 0)], N129,
     ["/n130/libnvrtc.so.13: NVRTC 13.0 is newer than the driver's CUDA 12.9, skipped"]),
    # Every GPU of the run: one NVRTC for a V100 and a B200 together.
    ([N13, N124, N129], (13, 0), [(7, 0), (10, 0)], N129,
     ["/n130/libnvrtc.so.13: NVRTC 13.0 cannot compile for sm_70 (Volta): dropped in CUDA 13, skipped",
      "/n124/libnvrtc.so.12: NVRTC 12.4 cannot compile for sm_100 (Blackwell): newer than it, skipped"]),
    # An NVRTC too old to say what it compiles for (before CUDA 11.2) is taken at its word.
    ([N124._replace(archs=None)], (12, 4), [(10, 0)], N124._replace(archs=None), []),
])
def test_choose_for_the_gpu(candidates, driver, gpus, nvrtc, notes):
    assert cuda_libs.choose(candidates, driver, gpus) == (nvrtc, None, notes)


# The whole matrix: which NVRTC a node gets, by its driver's CUDA (rows) and its GPU (columns),
# offered NVRTC 13.0, 12.9, 12.8 and 12.4 in that order (a cluster's toolkit modules, newest
# first); "-": none usable (exit 3).
MATRIX_ARCHS = [(7, 0), (7, 5), (8, 0), (9, 0), (10, 0), (10, 3), (11, 0), (12, 0), (12, 1)]
MATRIX = """
driver   sm_70  sm_75  sm_80  sm_90  sm_100  sm_103  sm_110  sm_120  sm_121
12.4     12.4   12.4   12.4   12.4   -       -       -       -       -
12.8     12.8   12.8   12.8   12.8   12.8    -       -       12.8    -
12.9     12.9   12.9   12.9   12.9   12.9    12.9    -       12.9    12.9
13.0     12.9   13.0   13.0   13.0   13.0    13.0    13.0    13.0    13.0
unknown  12.9   13.0   13.0   13.0   13.0    13.0    13.0    13.0    13.0
"""


def test_the_rule_over_architectures_nvrtc_versions_and_drivers():
    rows = [line.split() for line in MATRIX.strip().splitlines()]
    assert rows[0][1:] == [f"sm_{a}{b}" for a, b in MATRIX_ARCHS]
    offered = [N13, N129, N128, N124]
    for driver, *expected in rows[1:]:
        cuda = None if driver == "unknown" else tuple(map(int, driver.split(".")))
        got = [cuda_libs.choose(offered, cuda, [gpu]).nvrtc for gpu in MATRIX_ARCHS]
        assert ["-" if n is None else ".".join(map(str, n.version)) for n in got] == expected, driver


# --- versions, asked of the libraries ----------------------------------------------------

def test_versions_are_read_from_the_libraries(libs, tmp_path):
    assert cuda_search.read_candidates(libs["cu13"]) == ([
        Candidate("nvrtc", libs["cu13"], f"{libs['cu13']}/libnvrtc.so.13", (13, 0), ARCHS[13, 0]),
        Candidate("cublas", libs["cu13"], f"{libs['cu13']}/libcublas.so.13", (13, 0, 0)),
    ], [])
    nvrtc, blas = libs["cu12"]
    assert cuda_search.read_candidates(nvrtc)[0] == [
        Candidate("nvrtc", nvrtc, f"{nvrtc}/libnvrtc.so.12", CU12[0], ARCHS[CU12[0]])]
    assert cuda_search.read_candidates(blas)[0] == [Candidate("cublas", blas, f"{blas}/libcublas.so.12", CU12[1])]
    # An NVRTC older than nvrtcGetSupportedArchs (CUDA 11.2) says nothing of its architectures.
    old = stand_in.nvrtc(tmp_path / "old", 11, 1)
    assert cuda_search.read_candidates(str(old.parent))[0] == [
        Candidate("nvrtc", str(old.parent), str(old), (11, 1), None)]
    # A file that does not answer is left out, with the reason.
    stand_in.build(tmp_path, "libnvrtc.so.11.2", "int other(void) { return 0; }")
    found, notes = cuda_search.read_candidates(str(tmp_path))
    assert found == [] and len(notes) == 1
    assert notes[0].startswith(f"{tmp_path}/libnvrtc.so.11.2: cannot read its version (") and "nvrtcVersion" in notes[0]


def test_the_driver_version_is_read_from_libcuda(libs, tmp_path):
    assert cuda_search.find_driver(host(tmp_path, {"LD_LIBRARY_PATH": libs["driver-12.4"]})) == (
        (f"{libs['driver-12.4']}/libcuda.so.1", (12, 4), True, ()), [])
    # A driver the loader is not told about (no LD_LIBRARY_PATH, not in ldconfig's cache).
    assert cuda_search.find_driver(host(tmp_path, driver_folders=("/nonexistent", libs["driver-13.0"]))) == (
        (f"{libs['driver-13.0']}/libcuda.so.1", (13, 0), False, ()), [])
    assert cuda_search.find_driver(host(tmp_path)) == (None, [])
    # Its GPUs, by ordinal: their compute capabilities, asked of the driver.
    assert cuda_search.find_driver(host(tmp_path, {"LD_LIBRARY_PATH": libs["v100+b200"]}))[0].gpus == ((7, 0), (10, 0))


def test_libraries_newer_than_the_driver_are_skipped(libs, tmp_path):
    """CUDA 13 libraries come first in the search, and a CUDA 12.4 driver refuses them."""
    machine = host(tmp_path, {"LD_LIBRARY_PATH": libs["driver-12.4"],
                              "XOR_GPU_CUDA_LIBS": os.pathsep.join([libs["cu13"], *libs["cu12"]])})
    policy = cuda_libs.resolve(host=machine)
    assert policy.driver.version == (12, 4)
    assert (policy.nvrtc.path, policy.nvrtc.version) == (f"{libs['cu12'][0]}/libnvrtc.so.12", CU12[0])
    assert (policy.cublas.path, policy.cublas.version) == (f"{libs['cu12'][1]}/libcublas.so.12", CU12[1])
    assert policy.notes == [
        f"{libs['cu13']}/libnvrtc.so.13: NVRTC 13.0 is newer than the driver's CUDA 12.4, skipped",
        f"{libs['cu13']}/libcublas.so.13: cuBLAS 13.0.0 is newer than the driver's CUDA major 12, skipped"]
    folder = cuda_libs.link_folder(dest=str(tmp_path / "links"), host=machine)
    assert not [n for n in os.listdir(folder) if ".13" in n]
    assert os.readlink(os.path.join(folder, "libcuda.so")) == f"{libs['driver-12.4']}/libcuda.so.1"
    # A CUDA 13 driver takes the CUDA 13 libraries, the first in the search.
    machine.environ["LD_LIBRARY_PATH"] = libs["driver-13.0"]
    policy = cuda_libs.resolve(host=machine)
    assert (policy.nvrtc.version, policy.cublas.version, policy.notes) == ((13, 0), (13, 0, 0), [])


def refusal(machine, tmp_path):
    """link_folder's one line for a machine with nothing usable; no folder made, HINT last."""
    with pytest.raises(DeviceError) as error:
        cuda_libs.link_folder(dest=str(tmp_path / "links"), host=machine)
    message = str(error.value)
    assert "\n" not in message and not (tmp_path / "links").exists() and message.endswith(cuda_libs.HINT)
    return message


def test_nothing_usable_is_one_line_with_the_reason_and_the_fix(libs, tmp_path):
    machine = host(tmp_path, {"LD_LIBRARY_PATH": libs["driver-12.4"], "XOR_GPU_CUDA_LIBS": libs["cu13"]})
    message = refusal(machine, tmp_path)
    assert message.startswith("no usable NVRTC (libnvrtc.so.*) nor cuBLAS (libcublas.so.*) found; "
                              f"searched: {libs['cu13']}, {libs['driver-12.4']}; "
                              f"{libs['cu13']}/libnvrtc.so.13: NVRTC 13.0 is newer than the driver's CUDA 12.4")
    with pytest.raises(DeviceError, match=r"^no usable NVRTC .* found; searched: no folder: pip install"):
        cuda_libs.link_folder(host=host(tmp_path, driver_folders=(libs["driver-12.4"],)))


def test_a_volta_gets_cuda_12s_nvrtc_where_cuda_13s_comes_first(libs, tmp_path):
    """A V100 node with driver 580 whose first NVRTC is a CUDA 13 toolkit's: NVRTC 13 runs on the
    driver but cannot compile for sm_70, so the CUDA 12 NVRTC that is also there is chosen."""
    machine = host(tmp_path, {"LD_LIBRARY_PATH": libs["v100"],
                              "XOR_GPU_CUDA_LIBS": os.pathsep.join([libs["cu13"], *libs["cu12"]])})
    policy = cuda_libs.resolve(host=machine)
    assert policy.target == cuda_libs.Target((13, 0), ((7, 0),))
    assert (policy.nvrtc.version, policy.cublas.version) == (CU12[0], (13, 0, 0))  # cuBLAS 13 runs there
    assert policy.notes == [f"{libs['cu13']}/libnvrtc.so.13: NVRTC 13.0 cannot compile for sm_70 (Volta): "
                            "dropped in CUDA 13, skipped"]
    folder = cuda_libs.link_folder(dest=str(tmp_path / "links"), host=machine)
    assert os.readlink(os.path.join(folder, "libnvrtc.so")) == "libnvrtc.so.12"


def test_a_volta_offered_only_cuda_13s_nvrtc_is_refused_with_the_reason_and_the_fix(libs, tmp_path):
    machine = host(tmp_path, {"LD_LIBRARY_PATH": libs["v100"], "XOR_GPU_CUDA_LIBS": libs["cu13"]})
    assert refusal(machine, tmp_path).startswith(
        f"no usable NVRTC (libnvrtc.so.*) found; searched: {libs['cu13']}, {libs['v100']}; "
        f"{libs['cu13']}/libnvrtc.so.13: NVRTC 13.0 cannot compile for sm_70 (Volta): dropped in CUDA 13, skipped: "
        "sm_70 (Volta) needs a CUDA 12 NVRTC (CUDA 13 dropped it)")
    # A training stops before Theano with that line; doctor's own launch goes on (it reports it).
    with pytest.raises(DeviceError, match="NVRTC 13.0 cannot compile for sm_70"):
        cuda_libs.loader_folders(machine, strict=True)
    assert cuda_libs.loader_folders(machine) == []
    # Without a driver the run fails at pygpu's initialisation naming libcuda, as before.
    assert cuda_libs.loader_folders(host(tmp_path, {"XOR_GPU_CUDA_LIBS": str(tmp_path)}), strict=True) == []


def test_the_gpu_of_the_run_decides_where_a_node_has_two_generations(libs, tmp_path):
    """cuda0 is a V100, cuda1 a B200: each gets what it compiles for; `cuda` (either) needs an
    NVRTC for both, which CUDA 12.0's and 13.0's are not."""
    machine = host(tmp_path, {"LD_LIBRARY_PATH": libs["v100+b200"],
                              "XOR_GPU_CUDA_LIBS": os.pathsep.join([libs["cu13"], *libs["cu12"]])})
    assert cuda_libs.resolve(host=machine, gpu=0).nvrtc.version == CU12[0]
    assert cuda_libs.resolve(host=machine, gpu=1).nvrtc.version == (13, 0)
    policy = cuda_libs.resolve(host=machine)
    assert policy.nvrtc is None and policy.target.gpus == ((7, 0), (10, 0))


@pytest.mark.parametrize("gpu, front", [("h200", False), ("b200", True)])
def test_the_nvrtc_front_is_in_the_folder_for_blackwell_only(libs, tmp_path, gpu, front):
    """Compute capability 10 and more: libnvrtc.so is xor_gpu's NVRTC front, the real NVRTC beside
    it as libnvrtc-real.so, and through the folder it answers as the real one. Below 10 (an H200)
    the folder is what it always was: libnvrtc.so -> the real NVRTC's versioned name."""
    machine = host(tmp_path, {"LD_LIBRARY_PATH": libs[gpu], "XOR_GPU_CUDA_LIBS": libs["cu13"]})
    folder = cuda_libs.link_folder(dest=str(tmp_path / "links"), host=machine)
    nvrtc = os.path.join(folder, "libnvrtc.so")
    described = cuda_libs.describe(host=machine)
    assert described.nvrtc_front is front and described.gpus == [("sm_100 (Blackwell)" if front else "sm_90 (Hopper)")]
    if not front:
        assert os.readlink(nvrtc) == "libnvrtc.so.13" and cuda_libs.FRONT_REAL not in os.listdir(folder)
        return
    assert os.path.basename(os.path.realpath(nvrtc)) == "libnvrtc_front.so"
    assert os.readlink(os.path.join(folder, cuda_libs.FRONT_REAL)) == "libnvrtc.so.13"
    proc = _load_in_child(folder, """
        import ctypes
        nvrtc = ctypes.CDLL("libnvrtc.so")
        major, minor, n = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        assert nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0
        assert nvrtc.nvrtcGetNumSupportedArchs(ctypes.byref(n)) == 0
        print(f"{major.value}.{minor.value} {n.value}")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["13.0", str(len(ARCHS[13, 0]))]


# --- where to look ---------------------------------------------------------------------

def _fake_python3(folder, prints, marker):
    """A python3 for PATH that answers the question about its NVIDIA wheels, and leaves a mark."""
    folder.mkdir()
    (folder / "python3").write_text(f'#!/bin/sh\n: >"{marker}"\necho "{prints}"\n')
    (folder / "python3").chmod(0o755)
    return str(folder)


def test_search_order(tmp_path):
    def d(*parts):
        path = tmp_path.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    given = [d("given1"), d("given2")]
    usr = tmp_path / "usr"
    local = [d("usr", "cuda-12.10", "lib64"), d("usr", "cuda-12.4", "lib64"),
             d("usr", "cuda-12.4", "targets", "x86_64-linux", "lib"), d("usr", "cuda-9.2", "lib64")]
    os.symlink(usr / "cuda-12.10", usr / "cuda")  # the usual /usr/local/cuda -> cuda-X.Y: listed once
    # CUDA 12's wheels before CUDA 13's (nvidia/cu13): the older NVRTC runs on more drivers.
    sys_wheels = [d("site", "nvidia", n, "lib") for n in ("cublas", "cuda_nvrtc", "cu13")]
    other_wheels = [d("other", "nvidia", "cuda_nvrtc", "lib")]
    ldconfig = [("libnvrtc.so.11.2", f"{d('ldc')}/libnvrtc.so.11.2"), ("libcuda.so.1", f"{d('drv')}/libcuda.so.1"),
                ("libz.so.1", f"{d('z')}/libz.so.1")]
    environ = {
        "XOR_GPU_CUDA_LIBS": os.pathsep.join([*given, str(tmp_path / "missing")]),
        "CUDA_HOME": str(tmp_path / "home"), "CUDA_PATH": str(tmp_path / "path"),
        "PATH": _fake_python3(tmp_path / "bin", tmp_path / "other" / "nvidia", tmp_path / "ran"),
        "LD_LIBRARY_PATH": os.pathsep.join([d("ld"), given[0], ""]),
    }
    home = [d("home", "lib64"), d("home", "targets", "x86_64-linux", "lib")]
    path = [d("path", "lib64")]
    machine = Host(environ=environ, sys_path=[str(tmp_path / "site"), str(tmp_path / "nowhere")],
                   ldconfig=ldconfig, usr_local=str(usr))
    assert list(cuda_search.search_folders(machine)) == [
        *given, *home, *path, *sys_wheels, str(usr / "cuda" / "lib64"), *local[1:], *other_wheels,
        str(tmp_path / "ldc"), str(tmp_path / "ld")]


def test_the_other_python_is_asked_only_when_needed(libs, tmp_path):
    """Running the python3 on PATH costs time: only when nothing before it is usable."""
    marker = tmp_path / "ran"
    environ = {"PATH": _fake_python3(tmp_path / "bin", libs["site"] / "nvidia", marker),
               "LD_LIBRARY_PATH": libs["driver-12.4"]}
    policy = cuda_libs.resolve(libs["cu12"], host=host(tmp_path, environ))
    assert policy.searched == libs["cu12"] and not marker.exists()
    policy = cuda_libs.resolve(host=host(tmp_path, environ))
    assert marker.exists()
    assert policy.searched == [libs["cu12"][1], libs["cu12"][0]]  # CUDA 12's nvidia/*/lib: enough
    assert policy.nvrtc.version == CU12[0]


def test_given_folders_come_first_and_the_search_fills_in(libs, tmp_path):
    """NVRTC from a folder given in XOR_GPU_CUDA_LIBS, cuBLAS from the wheels on sys.path."""
    machine = host(tmp_path, {"XOR_GPU_CUDA_LIBS": libs["cu12"][0], "LD_LIBRARY_PATH": libs["driver-13.0"]})
    machine.sys_path = [str(libs["site"])]
    policy = cuda_libs.resolve(host=machine)
    assert policy.nvrtc.folder == libs["cu12"][0] and policy.cublas.folder == libs["cu12"][1]


# --- the folder -------------------------------------------------------------------------

def _load_in_child(folder, code):
    env = {**os.environ, "LD_LIBRARY_PATH": str(folder)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)


def test_folder_holds_the_chosen_libraries_and_unversioned_names(libs, tmp_path):
    folder = cuda_libs.link_folder(libs["cu12"], dest=str(tmp_path / "links"))
    names = set(os.listdir(folder))
    assert {"libnvrtc.so", "libnvrtc.so.12", "libnvrtc-builtins.so.12.0", "libcublas.so",
            "libcublas.so.12", "libcublasLt.so.12"} <= names
    assert os.readlink(os.path.join(folder, "libnvrtc.so")) == "libnvrtc.so.12"
    # The unversioned names load, the way libgpuarray dlopens them, and reach their
    # dependencies: libnvrtc's builtins through $ORIGIN.
    proc = _load_in_child(folder, """
        import ctypes
        print(ctypes.CDLL("libnvrtc.so").nvrtcStandIn(), ctypes.CDLL("libcublas.so").cublasStandIn())
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1200", "7"]


def test_without_the_folder_the_unversioned_names_do_not_load(libs):
    """The control for the test above: the wheel's own folder lacks the names libgpuarray asks for."""
    proc = _load_in_child(libs["cu12"][0], 'import ctypes; ctypes.CDLL("libnvrtc.so")')
    assert proc.returncode != 0 and "libnvrtc.so" in proc.stderr


def test_a_new_choice_replaces_the_links_of_the_old_one(libs, tmp_path):
    dest = str(tmp_path / "links")
    cuda_libs.link_folder(dest=dest, host=host(tmp_path, {"XOR_GPU_CUDA_LIBS": libs["cu13"],
                                                          "LD_LIBRARY_PATH": libs["driver-13.0"]}))
    cuda_libs.link_folder(libs["cu12"], dest=dest, host=host(tmp_path))
    assert not [n for n in os.listdir(dest) if ".13" in n or n == "libcuda.so"]
    assert os.readlink(os.path.join(dest, "libcublas.so")) == "libcublas.so.12"


def test_describe_is_json_data_for_doctor_and_check(libs, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # the default folder: ~/.cache/xor_gpu/cuda-libs/KEY
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    machine = host(tmp_path, {"XOR_GPU_CUDA_LIBS": os.pathsep.join([libs["cu13"], *libs["cu12"]]),
                              "LD_LIBRARY_PATH": libs["driver-12.4"]})
    record = cuda_libs.describe(host=machine)
    described = json.loads(json.dumps(record.to_dict()))
    assert described["folder"].startswith(f"{tmp_path}/.cache/xor_gpu/cuda-libs/")
    assert described == {
        "driver": "12.4", "libcuda": f"{libs['driver-12.4']}/libcuda.so.1", "gpus": [],
        "nvrtc": {"path": f"{libs['cu12'][0]}/libnvrtc.so.12", "version": "12.0"},
        "cublas": {"path": f"{libs['cu12'][1]}/libcublas.so.12", "version": "12.0.2"},
        "folder": described["folder"], "nvrtc_front": False, "searched": [libs["cu13"], *libs["cu12"]],
        "notes": cuda_libs.resolve(host=machine).notes, "problem": None, "fix": None,
    }
    assert len(described["notes"]) == 2
    assert CudaLibs.from_dict(described) == record
    assert dict(render_doctor.cuda_libs(record))["nvrtc"] == f"12.0 {libs['cu12'][0]}/libnvrtc.so.12"


def test_a_folder_of_links_in_a_cache_others_can_change_is_refused(libs, tmp_path, common, nobody, monkeypatch):
    """The folder goes first on LD_LIBRARY_PATH: in a cache folder another user can change, a
    run would load their libraries. A run refuses it (one line, exit 3); doctor names it."""
    nobody.mkdir(common / "cache", 0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(common / "cache"))
    machine = host(tmp_path, {"XOR_GPU_CUDA_LIBS": os.pathsep.join(libs["cu12"])})
    with pytest.raises(UnsafeFolder) as refused:
        cuda_libs.loader_folders(machine)
    message = str(refused.value)
    assert refused.value.exit_status == 3 and message.startswith(f"cache folder {common}/cache/xor_gpu/cuda-libs/")
    assert message.endswith(f" lies in {common}/cache, which other users can change (owner nobody, mode 0777): "
                            f"{CACHE_HOME_FIX}")
    described = cuda_libs.describe(host=machine)
    assert described.folder is None and (described.problem, described.fix) == (message, CACHE_HOME_FIX)


def test_doctor_names_the_policy_reason_when_nothing_is_usable(libs, tmp_path):
    findings = dataclasses.replace(doctor.collect(), cuda_libs=cuda_libs.describe(
        host=host(tmp_path, {"XOR_GPU_CUDA_LIBS": libs["cu13"], "LD_LIBRARY_PATH": libs["driver-12.4"]})))
    problems = {p.what: p.fix for p in findings.advice()}
    reason = findings.cuda_libs.problem
    assert "NVRTC 13.0 is newer than the driver's CUDA 12.4" in reason and problems[reason] == cuda_libs.HINT
    assert f"problem: {reason}" in render_doctor.doctor(findings)
    assert not [p for p in problems if p.startswith(("libcuda.so", "libnvrtc.so", "libcublas.so"))]


@pytest.mark.parametrize("encoded, version", [(90100, "9.1.0"), (8907, "8.9.7")])
def test_cudnn_is_found_where_the_nvidia_libraries_are_searched_with_its_version(tmp_path, encoded, version):
    """What Theano would find if a user enabled it; runs leave it off (backend.CUDNN_DEFAULT)."""
    marker = tmp_path / "asked"
    bin_dir = _fake_python3(tmp_path / "bin", "", marker)  # a python3 on PATH is never asked for it
    assert cuda_search.find_cudnn(host(tmp_path, {"PATH": str(bin_dir)})) == (None, None) and not marker.exists()
    path = stand_in.cudnn(tmp_path / "lib", encoded)
    assert cuda_search.find_cudnn(host(tmp_path, {"XOR_GPU_CUDA_LIBS": str(tmp_path / "lib")})) == (str(path), version)


def test_cuda_libs_command(libs, tmp_path):
    proc = run_cli("cuda-libs", "--from", libs["cu12"][0], "--from", libs["cu12"][1], "--dest", tmp_path / "l",
                   check=0)
    assert proc.stdout.strip() == str(tmp_path / "l")
    assert os.readlink(tmp_path / "l" / "libcublas.so") == "libcublas.so.12"


# --- the real NVIDIA wheels --------------------------------------------------------------

COMPILE_A_KERNEL = """
    import ctypes
    nvrtc = ctypes.CDLL("libnvrtc.so")
    prog = ctypes.c_void_p()
    src = b'extern "C" __global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }'
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), src, b"k.cu", 0, None, None) == 0
    options = (ctypes.c_char_p * 1)(b"-arch=compute_90")
    print(nvrtc.nvrtcCompileProgram(prog, 1, options))
"""


@pytest.mark.cuda_compile
def test_nvrtc_13_from_its_wheel_compiles_through_the_folder_of_links(tmp_path):
    """NVRTC 13's wheel (nvidia/cu13/lib) opens its builtins by name, through the loader's path
    (it has no $ORIGIN): through the folder of links, first on LD_LIBRARY_PATH as a run has it,
    a kernel compiles; by the wheel's own name elsewhere, it does not."""
    import nvidia

    cu13 = os.path.join(nvidia.__path__[0], "cu13", "lib")
    folder = cuda_libs.link_folder([cu13], dest=str(tmp_path / "links"))
    assert os.path.realpath(os.path.join(folder, "libnvrtc.so")) == os.path.join(cu13, "libnvrtc.so.13")
    proc = _load_in_child(folder, COMPILE_A_KERNEL)
    assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stdout + proc.stderr  # NVRTC_SUCCESS
    (tmp_path / "elsewhere").mkdir()
    os.symlink(os.path.join(cu13, "libnvrtc.so.13"), tmp_path / "elsewhere" / "libnvrtc.so")
    proc = _load_in_child(tmp_path / "elsewhere", COMPILE_A_KERNEL)
    assert proc.stdout.strip() != "0", proc.stdout + proc.stderr

def _installed(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@pytest.mark.device
@pytest.mark.skipif(not DEVICE.startswith("cuda"), reason="the pinned NVIDIA wheels are installed in the gpu env only")
@pytest.mark.skipif(not _installed("nvidia-cuda-nvrtc-cu12"),
                    reason="nvidia-cuda-nvrtc-cu12 is not installed: CUDA libraries come from elsewhere "
                           "(a toolkit or XOR_GPU_CUDA_LIBS, as in the offline bundle)")
def test_pinned_nvidia_wheels_are_wired(tmp_path, monkeypatch):
    """In the gpu env: the real NVRTC and cuBLAS wheels are found, their versions read, and
    they load by the unversioned names. No GPU is needed to load them, so this runs in CI too."""
    for name in ("XOR_GPU_CUDA_LIBS", "CUDA_HOME", "CUDA_PATH"):  # the wheels on sys.path come next
        monkeypatch.delenv(name, raising=False)
    policy = cuda_libs.resolve()
    assert (policy.nvrtc.version, policy.cublas.version) == ((12, 4), (12, 4, 5)), policy
    folder = cuda_libs.link_folder(dest=str(tmp_path / "links"))
    proc = _load_in_child(folder, """
        import ctypes
        nvrtc = ctypes.CDLL("libnvrtc.so")
        major, minor = ctypes.c_int(), ctypes.c_int()
        assert nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0
        ctypes.CDLL("libcublas.so")
        print(f"{major.value}.{minor.value}")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "12.4"
