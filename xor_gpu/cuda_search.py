"""What NVIDIA libraries this machine has: where to look for them, most preferred first
(`search_folders`), and what each one is, asked of the library itself through ctypes: the
driver's libcuda.so.1, the CUDA version it supports and its GPUs' compute capabilities
(`find_driver`), each NVRTC's version and the architectures it compiles for, each cuBLAS's
version (`read_candidates`), the cuDNN there is (`find_cudnn`). Which of them a run uses is
xor_gpu/cuda_libs.py's choice.
"""
import ctypes
import dataclasses
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
from collections import namedtuple

# Per architecture (`uname -m`): how `ldconfig -p` tags its libraries, and a CUDA toolkit's
# folder of them (aarch64 servers, Grace Hopper included, are CUDA's "sbsa" target).
LDCONFIG_ABI = {"x86_64": "x86-64", "aarch64": "AArch64"}
TOOLKIT_TARGET = {"x86_64": "x86_64-linux", "aarch64": "sbsa-linux"}
# Where drivers live when the loader is not told about them (containers, WSL).
DRIVER_FOLDERS = ("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib64",
                  f"/usr/lib/{platform.machine()}-linux-gnu", "/usr/lib/wsl/lib")
OTHER_PYTHON_TIMEOUT = 30
# Run by the python3 on PATH (PyTorch's, say): its nvidia/ wheel roots, without importing torch.
NVIDIA_ROOTS = """
import importlib.util, os, site
roots = []
try:
    spec = importlib.util.find_spec("nvidia")
    roots += list(spec.submodule_search_locations or []) if spec else []
except Exception:
    pass
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    roots.append(os.path.join(sp, "nvidia"))
print("\\n".join(r for r in dict.fromkeys(roots) if os.path.isdir(r)))
"""

# version: tuple of ints; archs: NVRTC's architectures as nvrtcGetSupportedArchs lists them
# (70 for sm_70), None for cuBLAS or an NVRTC too old to say (before CUDA 11.2).
Candidate = namedtuple("Candidate", "kind folder path version archs", defaults=(None,))
# version: (major, minor); gpus: the compute capability (major, minor) of each GPU it shows
# this process, by ordinal, () for none.
Driver = namedtuple("Driver", "path version on_loader_path gpus", defaults=((),))


@dataclasses.dataclass
class Host:
    """What the machine offers to the search: the real one by default; tests make their own."""

    environ: dict = dataclasses.field(default_factory=lambda: os.environ)
    sys_path: list = dataclasses.field(default_factory=lambda: sys.path)
    ldconfig: list = None  # (name, path) pairs as `ldconfig -p` lists them; None: ask ldconfig
    usr_local: str = "/usr/local"
    driver_folders: tuple = DRIVER_FOLDERS

    def ldconfig_entries(self):
        if self.ldconfig is None:
            self.ldconfig = _run_ldconfig()
        return self.ldconfig


def _run_ldconfig():
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    abi = re.escape(LDCONFIG_ABI.get(platform.machine(), platform.machine()))
    return re.findall(rf"^\s*(\S+) \([^)]*{abi}[^)]*\) => (\S+)$", out, re.M)


def path_list(value):
    return [p for p in (value or "").split(os.pathsep) if p]


def _version_key(text):
    return tuple(int(n) for n in re.findall(r"\d+", text))



# --- where to look -------------------------------------------------------------------

def _toolkit_roots(host):
    roots = [host.environ.get("CUDA_HOME"), host.environ.get("CUDA_PATH")]
    return [r for r in roots if r]


def _local_toolkits(host):
    """/usr/local/cuda, then /usr/local/cuda-X.Y newest first."""
    versions = glob.glob(os.path.join(host.usr_local, "cuda-*"))
    return [os.path.join(host.usr_local, "cuda"), *sorted(versions, key=_version_key, reverse=True)]


def _toolkit_libs(roots):
    target = TOOLKIT_TARGET.get(platform.machine(), f"{platform.machine()}-linux")
    return [os.path.join(r, sub) for r in roots for sub in ("lib64", os.path.join("targets", target, "lib"))]


def _wheel_libs(nvidia_roots):
    """nvidia/<component>/lib of CUDA 12's wheels, then CUDA 13's nvidia/cu13/lib: where both
    are installed (the cuda extra), CUDA 12's NVRTC runs on more drivers, and CUDA 13's is
    taken for what it alone compiles for (Blackwell, on a driver of CUDA 13)."""
    def order(lib):
        component = os.path.basename(os.path.dirname(lib))
        return re.fullmatch(r"cu\d+", component) is not None, component

    return [lib for root in nvidia_roots for lib in sorted(glob.glob(os.path.join(root, "*", "lib")), key=order)]


def _other_python_roots(host):
    """The nvidia/ roots of the python3 on PATH, asked in a child process (it costs time)."""
    exe = shutil.which("python3", path=host.environ.get("PATH", ""))
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-c", NVIDIA_ROOTS], capture_output=True, text=True,
                             env=dict(host.environ), timeout=OTHER_PYTHON_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.splitlines()


def _all_folders(host, other_python=True):
    """Every folder in search order, lazily: later groups cost more to list."""
    env = host.environ
    yield path_list(env.get("XOR_GPU_CUDA_LIBS"))
    yield _toolkit_libs(_toolkit_roots(host))
    yield _wheel_libs(os.path.join(p or ".", "nvidia") for p in host.sys_path)
    yield _toolkit_libs(_local_toolkits(host))
    yield _wheel_libs(_other_python_roots(host)) if other_python else []
    yield [os.path.dirname(path) for name, path in host.ldconfig_entries()
           if re.match(r"lib(nvrtc|cublas|cudnn)\.so", name)]
    yield path_list(env.get("LD_LIBRARY_PATH"))


def search_folders(host=None, other_python=True):
    """Folders that may hold libnvrtc.so.* / libcublas.so.*, most preferred first: the
    XOR_GPU_CUDA_LIBS folders, CUDA_HOME, CUDA_PATH, the NVIDIA wheels on sys.path,
    /usr/local/cuda, /usr/local/cuda-* (newest first), the NVIDIA wheels of the python3 on
    PATH, ldconfig's, LD_LIBRARY_PATH. Existing folders only, each once. A generator: the
    caller stops once it has what it needs, and the costly groups are never listed."""
    host = host or Host()
    seen = set()
    for group in _all_folders(host, other_python):
        for folder in group:
            real = os.path.realpath(folder)
            if real not in seen and os.path.isdir(folder):
                seen.add(real)
                yield folder


# --- what is there ---------------------------------------------------------------------

def _files(folder, kind):
    """libX.so.N[.M...] files of one kind in `folder`, newest named first; one name per
    file (the shortest, e.g. libnvrtc.so.12 rather than libnvrtc.so.12.4.127)."""
    try:
        names = [n for n in os.listdir(folder) if re.fullmatch(rf"lib{kind}\.so(\.\d+)+", n)]
    except OSError:  # unreadable: nothing to use there
        return []
    by_file = {}
    for name in sorted(names, key=len):
        by_file.setdefault(os.path.realpath(os.path.join(folder, name)), name)
    return [os.path.join(folder, n) for n in sorted(by_file.values(), key=_version_key, reverse=True)]


def _status_ok(status, call):
    if status != 0:
        raise OSError(f"{call} returned {status}")


def _nvrtc(path):
    """(version, archs) of an NVRTC: what it is, and what it compiles for (asked of NVRTC
    itself: CUDA 13 dropped Volta and older, and only 12.8 and later know Blackwell)."""
    lib = ctypes.CDLL(path)
    major, minor, count = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    _status_ok(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    if not hasattr(lib, "nvrtcGetSupportedArchs"):
        return (major.value, minor.value), None
    _status_ok(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)), "nvrtcGetNumSupportedArchs")
    archs = (ctypes.c_int * count.value)()
    _status_ok(lib.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs")
    return (major.value, minor.value), tuple(archs)


def _cublas(path):
    """(version, None) of a cuBLAS."""
    # cuBLAS needs its Lt: loaded first from the same folder, it is found even when
    # libcublas has no $ORIGIN runpath (some toolkits).
    lt = os.path.join(os.path.dirname(path), os.path.basename(path).replace("libcublas", "libcublasLt"))
    if os.path.exists(lt):
        ctypes.CDLL(lt)
    lib, values = ctypes.CDLL(path), []
    for prop in range(3):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
        value = ctypes.c_int()
        _status_ok(lib.cublasGetProperty(prop, ctypes.byref(value)), "cublasGetProperty")
        values.append(value.value)
    return tuple(values), None


ASK = {"nvrtc": _nvrtc, "cublas": _cublas}


def read_candidates(folder):
    """([Candidate], [note]) for the NVRTC and cuBLAS files in `folder`; a file whose
    version cannot be read is left out, with a note saying why."""
    found, notes = [], []
    for kind, ask in ASK.items():
        for path in _files(folder, kind):
            try:
                found.append(Candidate(kind, folder, path, *ask(path)))
            except (OSError, AttributeError) as exc:
                notes.append(f"{path}: cannot read its version ({' '.join(str(exc).split())}), skipped")
    return found, notes


def _driver_version(lib):
    version = ctypes.c_int()
    _status_ok(lib.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
    return version.value // 1000, version.value % 1000 // 10


def _driver_gpus(lib):
    """The compute capability of each GPU the driver shows this process, by ordinal; () when
    it shows none (cuInit fails without a GPU)."""
    count, gpus = ctypes.c_int(), []
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return ()
    for ordinal in range(count.value):
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if (lib.cuDeviceGet(ctypes.byref(dev), ordinal) or lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
                or lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)):  # compute capability major, minor
            break
        gpus.append((major.value, minor.value))
    return tuple(gpus)


def find_driver(host=None):
    """(Driver or None, [note]): the first libcuda.so.1 that answers, in the loader's own
    order (LD_LIBRARY_PATH, then its cache), then where drivers live unannounced."""
    host = host or Host()
    loader = [os.path.join(d, "libcuda.so.1") for d in path_list(host.environ.get("LD_LIBRARY_PATH"))]
    loader += [path for name, path in host.ldconfig_entries() if name == "libcuda.so.1"]
    elsewhere = [os.path.join(d, "libcuda.so.1") for d in host.driver_folders]
    notes = []
    for path, on_loader_path in [(p, True) for p in loader] + [(p, False) for p in elsewhere]:
        if os.path.exists(path):
            try:
                lib = ctypes.CDLL(path)
                return Driver(path, _driver_version(lib), on_loader_path, _driver_gpus(lib)), notes
            except (OSError, AttributeError) as exc:
                notes.append(f"{path}: cannot ask its CUDA version ({' '.join(str(exc).split())}), skipped")
    return None, notes


# --- cuDNN ------------------------------------------------------------------------------

def _cudnn_version(path):
    """cudnnGetVersion() as "major.minor.patch" (cuDNN 9 encodes it as major*10000+minor*100+patch,
    earlier releases as major*1000+minor*100+patch)."""
    lib = ctypes.CDLL(path)
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    v = lib.cudnnGetVersion()
    major, rest = (v // 10000, v % 10000) if v >= 9_0000 else (v // 1000, v % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def find_cudnn(host=None):
    """(library, version) of the first libcudnn.so.* in the folders the NVIDIA libraries are
    searched in (search_folders; another Python is not asked: this is a record, not a choice),
    or (None, None). Theano uses cuDNN only when asked to (dnn.enabled, xor_gpu/backend.py); this
    says what it would find."""
    for folder in search_folders(host, other_python=False):
        for path in _files(folder, "cudnn"):
            try:
                return path, _cudnn_version(path)
            except (OSError, AttributeError):
                continue  # not loadable here: the next one
    return None, None
