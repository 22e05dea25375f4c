"""The process environment that must exist before Python and Theano start, set by one re-exec.

Only CUDA devices need one: libgpuarray dlopens the unversioned libnvrtc.so / libcublas.so /
libcuda.so, and the dynamic loader reads LD_LIBRARY_PATH only at process start. The folders
come from `cuda_libs`, the one place that decides which libraries are used. (Any
PYTHONHASHSEED will do: backend.py makes Theano's compile cache keys independent of it, so
a CPU or OpenCL run starts once, not twice.)
"""
import os
import sys

from xor_gpu import cuda_libs, engines

MARK = "XOR_GPU_REEXEC"  # set in the child so that a re-exec happens at most once


def wanted_env(devices, host=None):
    """{variable: value} to change in `host`'s environment before running on `devices`."""
    if not any(d.startswith("cuda") for d in devices):
        return {}
    host = host or cuda_libs.Host()
    first = cuda_libs.loader_folders(host)
    paths = [p for p in host.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if first and paths[:len(first)] != first:
        return {"LD_LIBRARY_PATH": os.pathsep.join([*first, *(p for p in paths if p not in first)])}
    return {}


def reexec_if_needed(argv, devices):
    if os.environ.get(MARK):
        return
    changes = wanted_env(devices)
    if changes:
        sys.stdout.flush()
        sys.stderr.flush()
        env = {**os.environ, **changes, MARK: "1"}
        os.execve(sys.executable, [sys.executable, "-m", "xor_gpu", *argv], env)


def reexec_for_engine(argv, engine):
    """Run `xor-gpu ARGS` in the engine's own Python when it is not this one (PyTensor and
    Theano need environments of their own)."""
    python = engines.python_for(engine)
    if python != sys.executable:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(python, [python, "-m", "xor_gpu", *argv])
