"""NVIDIA libraries for libgpuarray's CUDA backend: one folder holding the names it loads.

libgpuarray 0.7.6 dlopens the unversioned libcuda.so, libnvrtc.so and libcublas.so.
NVIDIA's pip wheels (and some toolkits) ship only versioned files, and libnvrtc finds its
builtins library through $ORIGIN, the folder of the name as opened. So the folder holds
symlinks to ALL the NVIDIA libraries found plus the unversioned names, and the launcher
puts it first on LD_LIBRARY_PATH.
"""
import ctypes
import glob
import hashlib
import os
import re
import sys

from xor_gpu.errors import DeviceError

PATTERNS = ("libnvrtc.so.*", "libnvrtc-builtins.so.*", "libcublas.so.*", "libcublasLt.so.*")
REQUIRED = ("libnvrtc", "libcublas")
HINT = ("pip install 'xor_gpu[cuda]' (NVIDIA's NVRTC and cuBLAS wheels), or set XOR_GPU_CUDA_LIBS "
        "to the folder holding libnvrtc.so.* and libcublas.so.* (e.g. /usr/local/cuda/lib64)")


def default_sources():
    """XOR_GPU_CUDA_LIBS alone when set (no mixing of CUDA versions); else NVIDIA wheels on
    sys.path, then a CUDA toolkit."""
    chosen = [p for p in os.environ.get("XOR_GPU_CUDA_LIBS", "").split(os.pathsep) if p]
    if chosen:
        return chosen
    sources = []
    for entry in sys.path:
        sources += sorted(glob.glob(os.path.join(entry, "nvidia", "*", "lib")))
    return sources + ["/usr/local/cuda/lib64"]


def find_libraries(sources):
    """{file name: path} of the NVIDIA libraries in `sources`, first folder wins per name."""
    found = {}
    for folder in sources:
        for pattern in PATTERNS:
            for path in sorted(glob.glob(os.path.join(folder, pattern))):
                found.setdefault(os.path.basename(path), os.path.abspath(path))
    return found


def _major_file(found, stem):
    """The file to link the unversioned name to: libX.so.<major> (or the shortest version)."""
    names = sorted((n for n in found if re.fullmatch(re.escape(stem) + r"\.so\.[0-9.]+", n)), key=len)
    return names[0] if names else None


def driver_libcuda():
    """Path of the NVIDIA driver's libcuda.so.1, or None when no driver is installed."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    with open("/proc/self/maps", encoding="utf-8") as maps:
        for line in maps:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libcuda.so"):
                return path
    return None


def _link(name, target, folder):
    tmp = os.path.join(folder, f".{name}.tmp{os.getpid()}")
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(folder, name))


def link_folder(sources=None, dest=None):
    """Create (or refresh) the folder of symlinks; returns its path. DeviceError when
    NVRTC or cuBLAS cannot be found."""
    sources = sources or default_sources()
    found = find_libraries(sources)
    missing = [stem for stem in REQUIRED if not _major_file(found, stem)]
    if missing:
        raise DeviceError(f"{' and '.join(missing)} not found in {', '.join(sources)}: {HINT}")
    if dest is None:
        key = hashlib.sha256("\n".join(sorted(found.values())).encode()).hexdigest()[:12]
        dest = os.path.join(os.path.expanduser("~"), ".cache", "xor_gpu", "cuda-libs", key)
    os.makedirs(dest, exist_ok=True)
    for name, path in found.items():
        _link(name, path, dest)
    for stem in REQUIRED:
        _link(stem + ".so", _major_file(found, stem), dest)
    libcuda = driver_libcuda()
    if libcuda:
        _link("libcuda.so", libcuda, dest)
    return dest


def folder_for_loader():
    """The folder to put first on LD_LIBRARY_PATH for a CUDA run, or None if none can be
    made (training then fails at pygpu's initialisation and `doctor` tells why)."""
    try:
        return link_folder()
    except (DeviceError, OSError):
        return None
