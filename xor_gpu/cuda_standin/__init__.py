"""xor_gpu's own C pieces in place of NVIDIA's libraries: stand-ins for the driver and cuBLAS,
for `doctor --compile-only`, and a front of the real NVRTC, for compile-only (which records
through it) and for runs on GPUs of compute capability 10 and more (libnvrtc_front.c).

The C sources beside this file are built with the host's C compiler at first use, into a
cache folder named by a digest of the source (a changed source is a new folder, never a
stale library). The stand-ins are only ever loaded through the folder that `compile_only`
puts first on LD_LIBRARY_PATH of its own child process. A real run that finds one loaded
refuses (`refuse_if_loaded`): the stand-in computes nothing. The front forwards to the real
NVRTC, so a run may load it.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess

from xor_gpu import host, private_folder
from xor_gpu.errors import DeviceError
from xor_gpu.results.train_report import NvrtcArch

HERE = os.path.dirname(os.path.abspath(__file__))
# The name libgpuarray opens: the C source beside this file.
STANDINS = {"libcuda.so": "libcuda_standin.c", "libcublas.so": "libcublas_standin.c"}
FRONT = {"libnvrtc.so": "libnvrtc_front.c"}
SOURCES = {**STANDINS, **FRONT}
FILE_PREFIXES = tuple(os.path.splitext(source)[0] for source in STANDINS.values())
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
    # g++ as C: nodes need g++ for Theano, and some lack the gcc command itself.
    gcc = shutil.which("gcc") or shutil.which("cc") or shutil.which("g++")
    if not gcc:
        raise DeviceError(f"cannot build {source}: no C compiler (gcc, cc, g++) on PATH: apt-get install gcc")
    os.makedirs(folder, exist_ok=True)
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        done = subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-x", "c", "-o", tmp, os.path.join(HERE, source),
                               "-x", "none", "-ldl"], capture_output=True, text=True, timeout=GCC_TIMEOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DeviceError(f"cannot build {source} with {gcc}: {exc}") from None
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no output"])[0]
        raise DeviceError(f"cannot build {source} with {gcc}: {first}")
    os.replace(tmp, out)  # atomic: a concurrent build finds either nothing or the whole file
    return out


def build(root=None, sources=None):
    """{name libgpuarray opens: path of the built library} for `sources` (default: the
    stand-ins and the front), built on first use."""
    root = root or cache_root()
    try:
        root = private_folder.make(root, private_folder.CACHE_HOME_FIX)  # its libraries are loaded
        return {name: _build_one(source, root) for name, source in (sources or SOURCES).items()}
    except OSError as exc:
        raise DeviceError(f"cannot build xor_gpu's CUDA libraries in {root}: {exc}: make ~/.cache writable "
                          "(or set HOME)") from None


def front():
    """The path of the NVRTC front, built on first use."""
    return build(sources=FRONT)["libnvrtc.so"]


def loaded(maps="/proc/self/maps", prefixes=FILE_PREFIXES):
    """The path of a stand-in library (or one of `prefixes`) mapped into this process, or None."""
    try:
        with open(maps, encoding="utf-8") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
    except OSError:
        return None
    return next((p for p in sorted(paths) if os.path.basename(p).startswith(prefixes)), None)


def front_record(maps="/proc/self/maps"):
    """What the NVRTC front loaded in this process did: NvrtcArch when it gave NVRTC an
    architecture in full (libgpuarray's, cut short), else None (not loaded: below compute
    capability 10, or off CUDA)."""
    path = loaded(maps, tuple(os.path.splitext(source)[0] for source in FRONT.values()))
    if not path:
        return None
    lib = ctypes.CDLL(path)  # the file already mapped: the same library, its own counters
    fixes = ctypes.c_int.in_dll(lib, "xor_gpu_nvrtc_arch_fixes").value
    if not fixes:
        return None
    text = {name: (ctypes.c_char * 32).in_dll(lib, f"xor_gpu_nvrtc_arch_{name}").value.decode()
            for name in ("asked", "given")}
    return NvrtcArch(text["asked"], text["given"], fixes)


def refuse_if_loaded():
    """DeviceError (exit 3) when this process runs on a stand-in: a real run's numbers
    would be whatever host memory held, not a GPU's."""
    found = None if allowed else loaded()
    if found:
        raise DeviceError(f"the CUDA stand-in of 'xor-gpu doctor --compile-only' is loaded ({found}): it "
                          "compiles kernels and runs none; remove its folder from LD_LIBRARY_PATH so that "
                          "the NVIDIA driver's libcuda.so is used")
