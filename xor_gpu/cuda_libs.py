"""Which NVIDIA libraries libgpuarray's CUDA backend gets, and one folder holding them.

libgpuarray 0.7.6 dlopens the unversioned libcuda.so, libnvrtc.so and libcublas.so. This
module is the one place that decides what those names mean, from what xor_gpu/cuda_search.py
finds (where to look, the driver's CUDA version, each library's own version):

- which to use (`choose`): the first NVRTC not newer than the driver's CUDA major.minor
  (the driver must JIT the PTX it writes) and the first cuBLAS whose major is not newer
  than the driver's (CUDA's minor version compatibility);
- one folder of symlinks (`link_folder`): NVIDIA's wheels ship only versioned names, and
  libnvrtc finds its builtins (libcublas its Lt) through $ORIGIN, the folder of the name
  as opened, so the folder links every libnvrtc* / libcublas* of the chosen folders plus
  the unversioned names. The launcher puts it first on LD_LIBRARY_PATH.
"""
import dataclasses
import glob
import hashlib
import os
import re
from collections import namedtuple

from xor_gpu import private_folder
from xor_gpu.cuda_search import Host, find_driver, path_list, read_candidates, search_folders
from xor_gpu.errors import DeviceError
from xor_gpu.host import cache_folder

LABELS = {"nvrtc": "NVRTC", "cublas": "cuBLAS"}
HINT = ("pip install 'xor_gpu[cuda]' (NVIDIA's NVRTC and cuBLAS wheels), or set XOR_GPU_CUDA_LIBS "
        "to folders holding a libnvrtc.so.* and a libcublas.so.* that the driver supports "
        "(e.g. /usr/local/cuda/lib64)")
DRIVER_UNKNOWN = ("driver unknown (no libcuda.so.1 answered): the first NVRTC and cuBLAS found are used, "
                  "versions unchecked")
Choice = namedtuple("Choice", "nvrtc cublas notes")
Policy = namedtuple("Policy", "driver nvrtc cublas searched notes")


def _text(version):
    return ".".join(map(str, version))


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
             for d in path_list(host.environ.get("XOR_GPU_CUDA_LIBS")) if not os.path.isdir(d)]
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
    if dest is None:  # a cache the loader reads first: the user's own or refused (private_folder)
        key = hashlib.sha256(repr(sorted(links.items())).encode()).hexdigest()[:12]
        dest = private_folder.make(os.path.join(cache_folder("cuda-libs"), key), private_folder.CACHE_HOME_FIX)
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
        except private_folder.UnsafeFolder as exc:
            why, fix = str(exc), private_folder.CACHE_HOME_FIX
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


def _library_line(library):
    return f"{library['version']} {library['path']}" if library else "none usable"


def summary(described):
    """(label, text) lines of `describe`'s data, for a human."""
    driver = f"{described['libcuda']} (CUDA {described['driver']})" if described["libcuda"] else "none"
    return [("libcuda", driver), ("nvrtc", _library_line(described["nvrtc"])),
            ("cublas", _library_line(described["cublas"])), ("cuda libs", described["folder"] or "none"),
            *(("  note", note) for note in described["notes"])]
