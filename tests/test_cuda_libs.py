"""Wiring the NVIDIA libraries libgpuarray dlopens by unversioned name.

Without a GPU this is still fully testable: stand-in libraries built with gcc prove the
folder, the unversioned names and the $ORIGIN lookup; in the gpu env the real pinned
NVIDIA wheels are wired and loaded (loading NVRTC and cuBLAS needs no GPU).
"""
import importlib.metadata
import os
import subprocess
import sys
import textwrap

import pytest

from xorlib import DEVICE
from xor_gpu import cuda_libs, launch
from xor_gpu.errors import DeviceError


def _build_lib(folder, soname, body, deps=()):
    src = folder / f"{soname}.c"
    src.write_text(body)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / soname), f"-Wl,-soname,{soname}", str(src),
                    "-Wl,-rpath,$ORIGIN", f"-L{folder}", *[f"-l:{d}" for d in deps]], check=True)


@pytest.fixture
def fake_wheel(tmp_path):
    """A folder shaped like NVIDIA's wheels: only versioned names, and libnvrtc needs its
    builtins library found through $ORIGIN, as the real one does."""
    lib = tmp_path / "site" / "nvidia" / "cuda_nvrtc" / "lib"
    lib.mkdir(parents=True)
    _build_lib(lib, "libnvrtc-builtins.so.12.4", "int builtins(void) { return 124; }")
    _build_lib(lib, "libnvrtc.so.12", "int builtins(void); int nvrtcStandIn(void) { return builtins(); }",
               deps=["libnvrtc-builtins.so.12.4"])
    blas = tmp_path / "site" / "nvidia" / "cublas" / "lib"
    blas.mkdir(parents=True)
    _build_lib(blas, "libcublasLt.so.12", "int lt(void) { return 7; }")
    _build_lib(blas, "libcublas.so.12", "int lt(void); int cublasStandIn(void) { return lt(); }",
               deps=["libcublasLt.so.12"])
    for f in (*lib.glob("*.c"), *blas.glob("*.c")):
        f.unlink()
    return tmp_path / "site", [str(lib), str(blas)]


def _load_in_child(folder, code):
    env = {**os.environ, "LD_LIBRARY_PATH": str(folder)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True)


def test_folder_holds_all_libraries_and_unversioned_names(fake_wheel, tmp_path):
    _, sources = fake_wheel
    folder = cuda_libs.link_folder(sources, dest=str(tmp_path / "links"))
    names = sorted(os.listdir(folder))
    assert {"libnvrtc.so", "libnvrtc.so.12", "libnvrtc-builtins.so.12.4", "libcublas.so",
            "libcublas.so.12", "libcublasLt.so.12"} <= set(names)
    assert os.readlink(os.path.join(folder, "libnvrtc.so")) == "libnvrtc.so.12"
    # The unversioned names load, the way libgpuarray dlopens them, and reach their
    # dependencies: libnvrtc's builtins through $ORIGIN.
    proc = _load_in_child(folder, """
        import ctypes
        print(ctypes.CDLL("libnvrtc.so").nvrtcStandIn(), ctypes.CDLL("libcublas.so").cublasStandIn())
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["124", "7"]


def test_without_the_folder_the_unversioned_names_do_not_load(fake_wheel):
    """The control for the test above: the wheel's own folder lacks the names libgpuarray asks for."""
    _, sources = fake_wheel
    proc = _load_in_child(sources[0], 'import ctypes; ctypes.CDLL("libnvrtc.so")')
    assert proc.returncode != 0 and "libnvrtc.so" in proc.stderr


def test_wheels_on_sys_path_are_found(fake_wheel, monkeypatch):
    site, sources = fake_wheel
    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.delenv("XOR_GPU_CUDA_LIBS", raising=False)
    assert cuda_libs.default_sources() == sorted(sources) + ["/usr/local/cuda/lib64"]


def test_cuda_libs_variable_alone_decides(fake_wheel, monkeypatch, tmp_path):
    site, sources = fake_wheel
    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.setenv("XOR_GPU_CUDA_LIBS", f"{tmp_path}/a{os.pathsep}{tmp_path}/b")
    assert cuda_libs.default_sources() == [f"{tmp_path}/a", f"{tmp_path}/b"]


def test_missing_libraries_are_a_clear_error(tmp_path):
    with pytest.raises(DeviceError, match=r"libnvrtc and libcublas not found in .*xor_gpu\[cuda\]"):
        cuda_libs.link_folder([str(tmp_path)])


def test_launcher_puts_the_folder_first_for_cuda_only(fake_wheel, monkeypatch):
    _, sources = fake_wheel
    monkeypatch.setenv("XOR_GPU_CUDA_LIBS", os.pathsep.join(sources))
    env = {"PYTHONHASHSEED": "0", "LD_LIBRARY_PATH": "/opt/other"}
    changes = launch.wanted_env(["cuda"], env)
    first, rest = changes["LD_LIBRARY_PATH"].split(os.pathsep, 1)
    assert os.path.isfile(os.path.join(first, "libnvrtc.so")) and rest == "/opt/other"
    assert launch.wanted_env(["opencl0:0"], env) == {}
    assert launch.wanted_env(["cpu"], {}) == {"PYTHONHASHSEED": "0"}


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
    """In the gpu env: the real NVRTC and cuBLAS wheels load by the unversioned names.
    No GPU is needed to load them, so this runs in CI too."""
    monkeypatch.delenv("XOR_GPU_CUDA_LIBS", raising=False)
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
