"""xor_gpu's own stand-ins for NVIDIA's driver and cuBLAS (and a recorder in front of the real
NVRTC), for `doctor --compile-only`.

The C sources beside this file are built with the host's gcc at first use, into a cache
folder named by a digest of the source (a changed source is a new folder, never a stale
library). They are only ever loaded through the folder that `compile_only` puts first on
LD_LIBRARY_PATH of its own child process. A real run that finds one loaded refuses
(`refuse_if_loaded`): the stand-in computes nothing.
"""
import hashlib
import os
import shutil
import subprocess

from xor_gpu import host, private_folder
from xor_gpu.errors import DeviceError

HERE = os.path.dirname(os.path.abspath(__file__))
# The name libgpuarray opens: the C source beside this file. The NVRTC recorder forwards
# every call to the real NVRTC, recording the compiler options libgpuarray passes.
SOURCES = {"libcuda.so": "libcuda_standin.c", "libcublas.so": "libcublas_standin.c",
           "libnvrtc.so": "libnvrtc_recorder.c"}
FILE_PREFIXES = tuple(os.path.splitext(source)[0] for source in SOURCES.values())
GCC_TIMEOUT = 120

# Set by compile_only in its own child process, the one place where the stand-in belongs.
allowed = False


def cache_root():
    return host.cache_folder("cuda-standin")


def _build_one(source, root):
    with open(os.path.join(HERE, source), "rb") as f:
        text = f.read()
    folder = os.path.join(root, hashlib.sha256(text).hexdigest()[:12])
    out = os.path.join(folder, os.path.splitext(source)[0] + ".so")
    if os.path.exists(out):
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise DeviceError("cannot build the CUDA stand-in: no gcc on PATH: apt-get install gcc")
    os.makedirs(folder, exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        done = subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", tmp, os.path.join(HERE, source), "-ldl"],
                              capture_output=True, text=True, timeout=GCC_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DeviceError(f"cannot build the CUDA stand-in with {gcc}: {exc}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no output"])[0]
        raise DeviceError(f"cannot build the CUDA stand-in with {gcc}: {first}")
    os.replace(tmp, out)  # atomic: a concurrent build finds either nothing or the whole file
    return out


def build(root=None):
    """{name libgpuarray opens: path of the built stand-in}, built on first use."""
    root = root or cache_root()
    try:
        root = private_folder.make(root, private_folder.CACHE_HOME_FIX)  # its libraries are loaded
        return {name: _build_one(source, root) for name, source in SOURCES.items()}
    except OSError as exc:
        raise DeviceError(f"cannot build the CUDA stand-in in {root}: {exc}: make ~/.cache writable "
                          "(or set HOME)") from None


def loaded(maps="/proc/self/maps"):
    """The path of a stand-in library mapped into this process, or None."""
    try:
        with open(maps, encoding="utf-8") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return None
    return next((p for p in sorted(paths) if os.path.basename(p).startswith(FILE_PREFIXES)), None)


def refuse_if_loaded():
    """DeviceError (exit 3) when this process runs on a stand-in: a real run's numbers
    would be whatever host memory held, not a GPU's."""
    found = None if allowed else loaded()
    if found:
        raise DeviceError(f"the CUDA stand-in of 'xor-gpu doctor --compile-only' is loaded ({found}): it "
                          "compiles kernels and runs none; remove its folder from LD_LIBRARY_PATH so that "
                          "the NVIDIA driver's libcuda.so is used")
