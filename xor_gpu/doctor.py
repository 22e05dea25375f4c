"""`xor-gpu doctor`: what is installed, what loads, and whether a device really trains.

It is what a user runs first when the GPU does not work, so each problem comes with the
line that fixes it. Theano is not imported here (that would bind a device); the device
check runs a one-step `xor-gpu train` in a child process, the same code path as a run.
"""
import ctypes
import importlib.metadata
import os
import platform
import subprocess
import sys

from xor_gpu import backend, child, compile_cache, cuda_libs, cuda_search, files, host, origin, render_doctor
from xor_gpu.config import TrainConfig
from xor_gpu.errors import EXIT_OK, DeviceError
from xor_gpu.results.doctor import LOADED_BY_LIBGPUARRAY, LOADS, DeviceProbe, Findings
from xor_gpu.results.train_report import Cudnn


def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load(name):
    try:
        ctypes.CDLL(name)
        return None
    except OSError as exc:
        return " ".join(str(exc).split())


def _dpkg_version(package):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def opencl_devices():
    """[(platform, device)] names through the OpenCL ICD loader, [] when there is none."""
    try:
        cl = ctypes.CDLL("libOpenCL.so.1")
    except OSError:
        return []
    n = ctypes.c_uint()
    if cl.clGetPlatformIDs(0, None, ctypes.byref(n)) != 0 or n.value == 0:
        return []
    platforms = (ctypes.c_void_p * n.value)()
    cl.clGetPlatformIDs(n.value, platforms, None)
    buf = ctypes.create_string_buffer(256)
    found = []
    for p in platforms:
        cl.clGetPlatformInfo(ctypes.c_void_p(p), 0x0902, 256, buf, None)  # CL_PLATFORM_NAME
        pname = buf.value.decode(errors="replace")
        nd = ctypes.c_uint()
        if cl.clGetDeviceIDs(ctypes.c_void_p(p), 0xFFFFFFFF, 0, None, ctypes.byref(nd)) != 0:
            continue
        ids = (ctypes.c_void_p * nd.value)()
        cl.clGetDeviceIDs(ctypes.c_void_p(p), 0xFFFFFFFF, nd.value, ids, None)
        for d in ids:
            cl.clGetDeviceInfo(ctypes.c_void_p(d), 0x102B, 256, buf, None)  # CL_DEVICE_NAME
            found.append((pname, buf.value.decode(errors="replace")))
    return found


def probe(device):
    """Train one step on `device` (a Device) in a child process: its DeviceProbe."""
    run = child.train(TrainConfig(device=device.name, steps=1))
    return DeviceProbe(name=device.name, error=None if run.ok else run.error)


def _pygpu():
    """(pygpu's version and libgpuarray's, None), or (None, why it does not import)."""
    try:
        import pygpu.gpuarray

        return (f"{pygpu.__version__} (libgpuarray api {pygpu.gpuarray.api_version()[0]}, "
                f"Debian package {_dpkg_version('libgpuarray3') or 'not from dpkg'})"), None
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return None, " ".join(str(exc).split())


def collect(device=None):
    """The Findings of this machine; with `device` (a Device), whether it trains."""
    import numpy

    blas = host.installed_blas()  # what the C engines link, loaded before pygpu is tried
    pygpu, pygpu_error = _pygpu()
    driver, gpus = host.cuda_driver()
    # what the launcher put on LD_LIBRARY_PATH, and why (for cudaN: that GPU's)
    cuda = cuda_libs.describe(gpu=device.index if device and device.is_cuda else None)
    cudnn, cudnn_version = cuda_search.find_cudnn()
    return Findings(
        python=f"{platform.python_version()} ({sys.executable})", numpy=numpy.__version__,
        theano=_version("theano"), xor_gpu=_version("xor_gpu"), cpu=host.cpu_name(), blas=blas,
        pygpu=pygpu, pygpu_error=pygpu_error, opencl_devices=[f"{p}: {d}" for p, d in opencl_devices()],
        cuda_driver=driver, cuda_gpus=gpus, cuda_libs=cuda,
        # cuDNN: what Theano would find, and whether runs use it (off unless THEANO_FLAGS say so)
        cudnn=Cudnn(enabled=backend.cudnn_enabled(), library=cudnn, version=cudnn_version, absent={"used"}),
        libraries={name: _load(name) or LOADS for name in LOADED_BY_LIBGPUARRAY},
        ld_library_path=os.environ.get("LD_LIBRARY_PATH", ""), compiledir=compile_cache.compiledir(),
        pocl_cache_dir=os.environ.get("POCL_CACHE_DIR", "(PoCL default, ~/.cache/pocl)"),
        manifest=origin.read_manifest(), device=probe(device) if device else None)


def main(device=None, json_path=None):
    """`xor-gpu doctor [--device DEV]`: the findings, their advice; exit 3 when DEV does not train."""
    files.check_writable(json_path)
    findings = collect(device)
    print(render_doctor.doctor(findings))
    if json_path:
        files.write_json(json_path, findings.to_dict())
    if device and findings.device.error:
        raise DeviceError(f"device {device} is not usable: {findings.device.error}")
    return EXIT_OK
