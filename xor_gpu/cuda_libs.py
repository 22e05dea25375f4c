"""Which NVIDIA libraries libgpuarray's CUDA backend gets, and one folder holding them.

libgpuarray 0.7.6 dlopens the unversioned libcuda.so, libnvrtc.so and libcublas.so. This
module is the one place that decides what those names mean:

- where to look, most preferred first (`search_folders`);
- the driver's libcuda.so.1 and the CUDA version it supports (`find_driver`);
- each library's version, asked of the library itself through ctypes (`read_candidates`);
- which to use (`choose`): the first NVRTC not newer than the driver's CUDA major.minor
  (the driver must JIT the PTX it writes) and the first cuBLAS whose major is not newer
  than the driver's (CUDA's minor version compatibility);
- one folder of symlinks (`link_folder`): NVIDIA's wheels ship only versioned names, and
  libnvrtc finds its builtins (libcublas its Lt) through $ORIGIN, the folder of the name
  as opened, so the folder links every libnvrtc* / libcublas* of the chosen folders plus
  the unversioned names. The launcher puts it first on LD_LIBRARY_PATH.
"""
import ctypes
import dataclasses
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections import namedtuple

from xor_gpu.errors import DeviceError
from xor_gpu.host import cache_folder

LABELS = {"nvrtc": "NVRTC", "cublas": "cuBLAS"}
# Where drivers live when the loader is not told about them (containers, WSL).
DRIVER_FOLDERS = ("/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib64",
                  "/usr/lib/x86_64-linux-gnu", "/usr/lib/wsl/lib")
HINT = ("pip install 'xor_gpu[cuda]' (NVIDIA's NVRTC and cuBLAS wheels), or set XOR_GPU_CUDA_LIBS "
        "to folders holding a libnvrtc.so.* and a libcublas.so.* that the driver supports "
        "(e.g. /usr/local/cuda/lib64)")
DRIVER_UNKNOWN = ("driver unknown (no libcuda.so.1 answered): the first NVRTC and cuBLAS found are used, "
                  "versions unchecked")
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

Candidate = namedtuple("Candidate", "kind folder path version")  # version: tuple of ints
Driver = namedtuple("Driver", "path version on_loader_path")  # version: (major, minor)
Choice = namedtuple("Choice", "nvrtc cublas notes")
Policy = namedtuple("Policy", "driver nvrtc cublas searched notes")


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
    return re.findall(r"^\s*(\S+) \([^)]*x86-64[^)]*\) => (\S+)$", out, re.M)


def _path_list(value):
    return [p for p in (value or "").split(os.pathsep) if p]


def _version_key(text):
    return tuple(int(n) for n in re.findall(r"\d+", text))


def _text(version):
    return ".".join(map(str, version))


# --- where to look -------------------------------------------------------------------

def _toolkit_roots(host):
    roots = [host.environ.get("CUDA_HOME"), host.environ.get("CUDA_PATH")]
    return [r for r in roots if r]


def _local_toolkits(host):
    """/usr/local/cuda, then /usr/local/cuda-X.Y newest first."""
    versions = glob.glob(os.path.join(host.usr_local, "cuda-*"))
    return [os.path.join(host.usr_local, "cuda"), *sorted(versions, key=_version_key, reverse=True)]


def _toolkit_libs(roots):
    return [os.path.join(r, sub) for r in roots for sub in ("lib64", os.path.join("targets", "x86_64-linux", "lib"))]


def _wheel_libs(nvidia_roots):
    """nvidia/<component>/lib, which also covers CUDA 13's nvidia/cu13/lib."""
    return [lib for root in nvidia_roots for lib in sorted(glob.glob(os.path.join(root, "*", "lib")))]


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
    yield _path_list(env.get("XOR_GPU_CUDA_LIBS"))
    yield _toolkit_libs(_toolkit_roots(host))
    yield _wheel_libs(os.path.join(p or ".", "nvidia") for p in host.sys_path)
    yield _toolkit_libs(_local_toolkits(host))
    yield _wheel_libs(_other_python_roots(host)) if other_python else []
    yield [os.path.dirname(path) for name, path in host.ldconfig_entries()
           if re.match(r"lib(nvrtc|cublas|cudnn)\.so", name)]
    yield _path_list(env.get("LD_LIBRARY_PATH"))


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


def _nvrtc_version(path):
    major, minor = ctypes.c_int(), ctypes.c_int()
    _status_ok(ctypes.CDLL(path).nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _cublas_version(path):
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
    return tuple(values)


VERSION_OF = {"nvrtc": _nvrtc_version, "cublas": _cublas_version}


def read_candidates(folder):
    """([Candidate], [note]) for the NVRTC and cuBLAS files in `folder`; a file whose
    version cannot be read is left out, with a note saying why."""
    found, notes = [], []
    for kind, version_of in VERSION_OF.items():
        for path in _files(folder, kind):
            try:
                found.append(Candidate(kind, folder, path, version_of(path)))
            except (OSError, AttributeError) as exc:
                notes.append(f"{path}: cannot read its version ({' '.join(str(exc).split())}), skipped")
    return found, notes


def _driver_version(path):
    version = ctypes.c_int()
    _status_ok(ctypes.CDLL(path).cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
    return version.value // 1000, version.value % 1000 // 10


def find_driver(host=None):
    """(Driver or None, [note]): the first libcuda.so.1 that answers, in the loader's own
    order (LD_LIBRARY_PATH, then its cache), then where drivers live unannounced."""
    host = host or Host()
    loader = [os.path.join(d, "libcuda.so.1") for d in _path_list(host.environ.get("LD_LIBRARY_PATH"))]
    loader += [path for name, path in host.ldconfig_entries() if name == "libcuda.so.1"]
    elsewhere = [os.path.join(d, "libcuda.so.1") for d in host.driver_folders]
    notes = []
    for path, on_loader_path in [(p, True) for p in loader] + [(p, False) for p in elsewhere]:
        if os.path.exists(path):
            try:
                return Driver(path, _driver_version(path), on_loader_path), notes
            except (OSError, AttributeError) as exc:
                notes.append(f"{path}: cannot ask its CUDA version ({' '.join(str(exc).split())}), skipped")
    return None, notes


# --- which to use ------------------------------------------------------------------------

RULES = {  # kind: (does `version` run on a driver of CUDA `driver`, what is compared)
    "nvrtc": (lambda version, driver: tuple(version[:2]) <= tuple(driver), "CUDA"),
    "cublas": (lambda version, driver: version[0] <= driver[0], "CUDA major"),
}


def choose(candidates, driver):
    """Choice(nvrtc, cublas, notes) from `candidates`, (kind, folder, path, version)
    tuples in search order, for a driver of CUDA `driver` (major, minor), or None when
    unknown. The first of each kind that the driver supports wins; every one passed over
    on the way gets a note saying why. Pure: plain data in, plain data out."""
    chosen, notes = {}, []
    if driver is None:
        notes.append(DRIVER_UNKNOWN)
    for kind, (supported, compared) in RULES.items():
        chosen[kind] = None
        for candidate in (c for c in candidates if c[0] == kind):
            if driver is None or supported(candidate[3], driver):
                chosen[kind] = candidate
                break
            limit = _text(driver) if compared == "CUDA" else str(driver[0])
            notes.append(f"{candidate[2]}: {LABELS[kind]} {_text(candidate[3])} is newer than the "
                         f"driver's {compared} {limit}, skipped")
    return Choice(chosen["nvrtc"], chosen["cublas"], notes)


def resolve(sources=None, host=None):
    """Policy(driver, nvrtc, cublas, searched, notes): what libgpuarray should get here.
    `sources` stand for XOR_GPU_CUDA_LIBS (searched first). The search stops at the first
    folder that completes the choice, so later (costlier) folders are not even listed."""
    host = host or Host()
    if sources is not None:
        host = dataclasses.replace(host, environ={**host.environ, "XOR_GPU_CUDA_LIBS": os.pathsep.join(sources)})
    notes = [f"{d}: no such folder (XOR_GPU_CUDA_LIBS)"
             for d in _path_list(host.environ.get("XOR_GPU_CUDA_LIBS")) if not os.path.isdir(d)]
    driver, driver_notes = find_driver(host)
    notes += driver_notes
    version = driver.version if driver else None
    candidates, searched, choice = [], [], choose([], version)
    for folder in search_folders(host):
        searched.append(folder)
        found, unreadable = read_candidates(folder)
        candidates += found
        notes += unreadable
        choice = choose(candidates, version)
        if choice.nvrtc and choice.cublas:
            break
    return Policy(driver, choice.nvrtc, choice.cublas, searched, notes + choice.notes)


def problem(policy):
    """Why `policy` is unusable, in one line, or None."""
    missing = [f"{LABELS[k]} (lib{k}.so.*)" for k in LABELS if getattr(policy, k) is None]
    if not missing:
        return None
    skipped = "; ".join(n for n in policy.notes if n != DRIVER_UNKNOWN)
    return (f"no usable {' nor '.join(missing)} found; searched: {', '.join(policy.searched) or 'no folder'}"
            + (f"; {skipped}" if skipped else ""))


# --- the folder ----------------------------------------------------------------------

def _wanted_links(policy):
    """{link name: target} of the folder."""
    links = {}
    for kind in LABELS:
        chosen = getattr(policy, kind)
        for path in sorted(glob.glob(os.path.join(chosen.folder, f"lib{kind}*.so*"))):
            if os.path.isfile(path) and os.path.basename(path) != f"lib{kind}.so":
                links[os.path.basename(path)] = os.path.abspath(path)
        links[f"lib{kind}.so"] = os.path.basename(chosen.path)  # relative: the link beside it
    if policy.driver:
        links["libcuda.so"] = policy.driver.path
    return links


def _link(name, target, folder):
    tmp = os.path.join(folder, f".{name}.tmp{os.getpid()}")
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(folder, name))


def _make_folder(policy, dest=None):
    links = _wanted_links(policy)
    if dest is None:
        key = hashlib.sha256(repr(sorted(links.items())).encode()).hexdigest()[:12]
        dest = os.path.join(cache_folder("cuda-libs"), key)
    os.makedirs(dest, exist_ok=True)
    for name in os.listdir(dest):  # an earlier choice's links go: the loader would still find them by name
        path = os.path.join(dest, name)
        if name not in links and os.path.islink(path) and re.match(r"lib(nvrtc|cublas|cuda)", name):
            os.unlink(path)
    for name, target in links.items():
        _link(name, target, dest)
    return dest


def link_folder(sources=None, dest=None, host=None):
    """Create (or refresh) the folder of symlinks for the libraries `resolve` chooses;
    returns its path. DeviceError (one line: why, and the fix) when there are none."""
    policy = resolve(sources, host)
    why = problem(policy)
    if why:
        raise DeviceError(f"{why}: {HINT}")
    return _make_folder(policy, dest)


def loader_folders(host=None):
    """Folders to put first on LD_LIBRARY_PATH for a CUDA run: the folder of links, then
    the driver's own folder when the loader would not find it there by itself (its
    libcuda.so.1 loads further driver libraries by name). [] when nothing usable is found:
    the run then fails at pygpu's initialisation and `doctor` says why."""
    policy = resolve(host=host)
    if problem(policy):
        return []
    try:
        folders = [_make_folder(policy)]
    except OSError:
        return []
    if policy.driver and not policy.driver.on_loader_path:
        folders.append(os.path.dirname(policy.driver.path))
    return folders


def describe(sources=None, host=None):
    """The choice as JSON-able data, for doctor and check: the driver, each library with
    its version, the folder of links, what was searched, notes on every library skipped,
    and when nothing usable is found the problem and its fix."""
    policy = resolve(sources, host)
    why, fix, folder = problem(policy), None, None
    if why:
        fix = HINT
    else:
        try:
            folder = _make_folder(policy)
        except OSError as exc:
            why, fix = f"cannot make the folder of links: {exc}", "make ~/.cache writable (or set HOME)"
    driver = policy.driver
    return {
        "driver": _text(driver.version) if driver else None,
        "libcuda": driver.path if driver else None,
        **{kind: {"path": c.path, "version": _text(c.version)} if c else None
           for kind, c in (("nvrtc", policy.nvrtc), ("cublas", policy.cublas))},
        "folder": folder,
        "searched": policy.searched,
        "notes": policy.notes,
        "problem": why,
        "fix": fix,
    }


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
    """{"library", "version"} of the first libcudnn.so.* in the folders the NVIDIA libraries are
    searched in (search_folders; another Python is not asked: this is a record, not a choice),
    or None. Theano uses cuDNN only when asked to (dnn.enabled, xor_gpu/backend.py); this says
    what it would find."""
    for folder in search_folders(host, other_python=False):
        for path in _files(folder, "cudnn"):
            try:
                return {"library": path, "version": _cudnn_version(path)}
            except (OSError, AttributeError):
                continue  # not loadable here: the next one
    return None


def _library_line(library):
    return f"{library['version']} {library['path']}" if library else "none usable"


def summary(described):
    """(label, text) lines of `describe`'s data, for a human."""
    driver = f"{described['libcuda']} (CUDA {described['driver']})" if described["libcuda"] else "none"
    return [("libcuda", driver), ("nvrtc", _library_line(described["nvrtc"])),
            ("cublas", _library_line(described["cublas"])), ("cuda libs", described["folder"] or "none"),
            *(("  note", note) for note in described["notes"])]
