"""The one re-exec of the command line, before Python and Theano bind anything: a CUDA run
needs the NVIDIA libraries' folders first on LD_LIBRARY_PATH, as libgpuarray dlopens the
unversioned libnvrtc.so / libcublas.so / libcuda.so and the dynamic loader reads that variable
only at process start (the folders come from `cuda_libs`, the one place that decides which
libraries are used); and an engine whose package this Python lacks runs in its own Python.
(Any PYTHONHASHSEED will do: backend.py makes Theano's compile cache keys independent of it,
so a CPU or OpenCL run starts once, not twice.)
"""
import os
import sys

from xor_gpu import cuda_libs, cuda_search, engine_python

MARK = "XOR_GPU_REEXEC"  # set in the child so that a re-exec happens at most once


def wanted_env(devices, host=None, strict=False):
    """{variable: value} to change in `host`'s environment before running on `devices` (Device
    values). `strict`: DeviceError (why, and the fix) when no usable NVIDIA libraries are found."""
    gpus = [d for d in devices if d.is_cuda]
    if not gpus:
        return {}
    host = host or cuda_search.Host()
    first = cuda_libs.loader_folders(host, gpus[0].index if len(gpus) == 1 else None, strict)
    paths = [p for p in host.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if first and paths[:len(first)] != first:
        return {"LD_LIBRARY_PATH": os.pathsep.join([*first, *(p for p in paths if p not in first)])}
    return {}


def exec_xor_gpu(python, argv, env):
    """Replace this process by `python -m xor_gpu ARGV` in `env`, what was printed flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python, "-m", "xor_gpu", *argv], env)


def for_devices(argv, devices, strict=False):
    """Run `xor-gpu ARGV` again with the environment `devices` need, when this one lacks it."""
    if os.environ.get(MARK):
        return
    changes = wanted_env(devices, strict=strict)
    if changes:
        exec_xor_gpu(sys.executable, argv, {**os.environ, **changes, MARK: "1"})


def for_engine(argv, engine):
    """Run `xor-gpu ARGS` in the engine's own Python when it is not this one (PyTensor and
    Theano need environments of their own)."""
    python = engine_python.python_for(engine)
    if python != sys.executable:
        exec_xor_gpu(python, argv, dict(os.environ))
