"""`xor-gpu doctor`: what is installed, what loads, and whether a device really trains.

It is what a user runs first when the GPU does not work, so each problem comes with the
line that fixes it. Theano is not imported here (that would bind a device); the device
check runs a one-step `xor-gpu train` in a child process, the same code path as a run.
"""
import ctypes
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from xor_gpu import backend, child, compile_cache, cuda_libs, cuda_search, devices, files, host, origin
from xor_gpu.config import TrainConfig
from xor_gpu.errors import EXIT_OK, DeviceError

# The shared libraries libgpuarray dlopens by these exact names, and how to get each.
OPENCL_LIBS = ("libOpenCL.so", "libclblast.so")
LOADED_BY_LIBGPUARRAY = {
    "libOpenCL.so": "apt-get install ocl-icd-libopencl1 ocl-icd-opencl-dev pocl-opencl-icd",
    "libclblast.so": "apt-get install libclblast-dev (OpenCL BLAS; libclblast1 alone lacks this name)",
    "libcuda.so": "install the NVIDIA driver (in Docker: the NVIDIA container toolkit and --gpus all)",
    "libnvrtc.so": "pip install 'xor_gpu[cuda]' or set XOR_GPU_CUDA_LIBS (see README, CUDA libraries)",
    "libcublas.so": "pip install 'xor_gpu[cuda]' or set XOR_GPU_CUDA_LIBS (see README, CUDA libraries)",
}


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
        devices = (ctypes.c_void_p * nd.value)()
        cl.clGetDeviceIDs(ctypes.c_void_p(p), 0xFFFFFFFF, nd.value, devices, None)
        for d in devices:
            cl.clGetDeviceInfo(ctypes.c_void_p(d), 0x102B, 256, buf, None)  # CL_DEVICE_NAME
            found.append((pname, buf.value.decode(errors="replace")))
    return found


def probe(device):
    """Train one step on `device` in a child process: None if it works, else the error line."""
    run = child.train(TrainConfig(device=device, steps=1))
    return None if run.ok else run.error


def collect(device=None):
    import numpy

    findings = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "numpy": numpy.__version__,
        "theano": _version("theano"),
        "xor_gpu": _version("xor_gpu"),
        "cpu": host.cpu_name(),
        "blas": host.installed_blas(),  # what the C engines link (xor_gpu.host)
    }
    try:
        import pygpu.gpuarray

        findings["pygpu"] = f"{pygpu.__version__} (libgpuarray api {pygpu.gpuarray.api_version()[0]}, "\
                            f"Debian package {_dpkg_version('libgpuarray3') or 'not from dpkg'})"
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        findings["pygpu"] = None
        findings["pygpu_error"] = " ".join(str(exc).split())
    findings["opencl_devices"] = [f"{p}: {d}" for p, d in opencl_devices()]
    findings["cuda_driver"], findings["cuda_gpus"] = host.cuda_driver()
    # what the launcher put on LD_LIBRARY_PATH, and why (for cudaN: that GPU's)
    gpu = devices.device(device) if device else None
    findings["cuda_libs"] = cuda_libs.describe(gpu=gpu.index if gpu and gpu.is_cuda else None)
    # cuDNN: what Theano would find, and whether runs use it (off unless THEANO_FLAGS say so)
    findings["cudnn"] = {"enabled": backend.cudnn_enabled(), **(cuda_search.find_cudnn() or {"library": None,
                                                                                           "version": None})}
    findings["libraries"] = {name: _load(name) or "ok" for name in LOADED_BY_LIBGPUARRAY}
    findings["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    findings["compiledir"] = compile_cache.compiledir()
    findings["pocl_cache_dir"] = os.environ.get("POCL_CACHE_DIR", "(PoCL default, ~/.cache/pocl)")
    manifest = origin.read_manifest()
    if manifest:
        findings["manifest"] = manifest
    if device:
        findings["device"] = {"name": device, "error": probe(device)}
    return findings


def advice(f):
    """(problem, fix) pairs for what is wrong."""
    out = []
    device = f.get("device")
    wants = devices.device(device["name"]) if device else None  # None: every family is of interest
    cuda = not wants or wants.is_cuda
    opencl = not wants or wants.is_opencl
    if f["pygpu"] is None and not (wants and wants.is_cpu):
        out.append((f"pygpu does not import: {f.get('pygpu_error')}",
                    "apt-get install python3-pygpu libgpuarray-dev, then: xor-gpu link-pygpu"))
    if f["blas"].get("problem"):
        out.append(tuple(f["blas"]["problem"]))
    chosen = f["cuda_libs"]
    if cuda and chosen["problem"]:
        out.append((chosen["problem"], chosen["fix"]))
    for name, status in f["libraries"].items():
        if chosen["problem"] and name not in OPENCL_LIBS:
            continue  # no folder of links was made: the problem above says why
        if status != "ok" and (opencl if name in OPENCL_LIBS else cuda):
            out.append((f"{name} does not load", LOADED_BY_LIBGPUARRAY[name]))
    if opencl and not f["opencl_devices"]:
        out.append(("no OpenCL device", "apt-get install pocl-opencl-icd (OpenCL on the CPU)"))
    if cuda and f["cuda_driver"] is None:
        out.append(("no NVIDIA driver (libcuda.so.1)", "cuda devices need an NVIDIA GPU and its driver"))
    elif cuda and not f["cuda_gpus"]:
        out.append((f"NVIDIA driver {f['cuda_driver']} sees no GPU", "check nvidia-smi; in Docker: --gpus all"))
    if device and device["error"]:
        out.append((f"device {device['name']} does not train: {device['error']}",
                    "fix the problems above; README: Troubleshooting"))
    return out


def format_findings(f):
    lines = [f"{key:<15} {f[key]}" for key in ("python", "numpy", "theano", "xor_gpu", "pygpu")]
    blas = f["blas"]
    lines.append(f"{'cpu':<15} {f['cpu']}")
    library = blas["library"] or ("not loaded (see the problem below)" if blas.get("problem") else "not found")
    lines.append(f"{'blas':<15} {library} ({blas['version'] or blas['ldflags'] or 'no ldflags'})")
    if blas.get("kernels"):
        kernels = blas["kernels"]
        lines.append(f"{'blas kernels':<15} {kernels['family'] or 'as OpenBLAS detects'} (chosen by {kernels['chosen_by']})")
    lines.append(f"{'opencl':<15} {'; '.join(f['opencl_devices']) or 'none'}")
    gpus = ", ".join(f["cuda_gpus"]) or "no GPU"
    lines.append(f"{'cuda driver':<15} {f['cuda_driver'] + ' (' + gpus + ')' if f['cuda_driver'] else 'none'}")
    lines += [f"{label:<15} {text}" for label, text in cuda_libs.summary(f["cuda_libs"])]
    cudnn = f["cudnn"]
    found = f"{cudnn['version']} {cudnn['library']}" if cudnn["library"] else "none found"
    lines.append(f"{'cudnn':<15} {found}; Theano uses it: {'yes' if cudnn['enabled'] else 'no'} (dnn.enabled)")
    for name, status in f["libraries"].items():
        lines.append(f"{name:<15} {status}")
    lines.append(f"{'compiledir':<15} {f['compiledir']}")
    lines.append(f"{'pocl cache':<15} {f['pocl_cache_dir']}")
    if "manifest" in f:
        m = dict(f["manifest"])
        lines.append(f"{'manifest':<15} {m.pop('path')}")
        for key, value in m.items():
            lines.append(f"  {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    if "device" in f:
        d = f["device"]
        lines.append(f"{'device ' + d['name']:<15} {'usable' if not d['error'] else 'NOT usable'}")
    problems = advice(f)
    if problems:
        lines.append("")
        lines += [f"problem: {p}\n    fix: {fix}" for p, fix in problems]
    return "\n".join(lines)


def main(device=None, json_path=None):
    files.check_writable(json_path)
    findings = collect(device)
    print(format_findings(findings))
    if json_path:
        files.write_json(json_path, findings)
    if device and findings["device"]["error"]:
        raise DeviceError(f"device {device} is not usable: {findings['device']['error']}")
    return EXIT_OK
