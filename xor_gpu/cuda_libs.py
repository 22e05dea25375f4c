"""Which NVIDIA libraries libgpuarray's CUDA backend gets, and one folder holding them.

libgpuarray 0.7.6 dlopens the unversioned libcuda.so, libnvrtc.so and libcublas.so. This
module is the one place that decides what those names mean, from what xor_gpu/cuda_search.py
finds (where to look, the driver's CUDA version and GPUs, each library's own version and,
for NVRTC, the architectures it compiles for), for doctor, check, train, the image, the
bundle and `doctor --compile-only` alike:

- which to use (`choose`): in search order, the first NVRTC that the driver runs (not newer
  than its CUDA major.minor: the driver must JIT the PTX it writes) and that compiles for the
  GPUs of the run (CUDA 13 dropped Volta and older; Blackwell needs 12.8 or later), and the
  first cuBLAS whose major is not newer than the driver's (CUDA's minor version
  compatibility); every one passed over is noted with the reason;
- one folder of symlinks (`link_folder`): NVIDIA's wheels ship only versioned names, and
  libnvrtc finds its builtins (libcublas its Lt) through $ORIGIN, the folder of the name
  as opened, or (CUDA 13's) through the loader's path, so the folder links every libnvrtc* /
  libcublas* of the chosen folders plus the unversioned names. The launcher puts it first on
  LD_LIBRARY_PATH. For a GPU of compute capability 10 or more, libnvrtc.so is xor_gpu's NVRTC
  front (xor_gpu/cuda_standin/libnvrtc_front.c), which gives NVRTC the architecture that
  libgpuarray cuts short; below 10 the folder is as it always was.
"""
import dataclasses
import glob
import hashlib
import os
import re
from collections import namedtuple

from xor_gpu import cuda_arch, cuda_standin, private_folder
from xor_gpu.cuda_arch import text as _text
from xor_gpu.cuda_search import Host, find_driver, path_list, read_candidates, search_folders
from xor_gpu.errors import DeviceError
from xor_gpu.host import cache_folder
from xor_gpu.results.doctor import CudaLibs, Library

LABELS = {"nvrtc": "NVRTC", "cublas": "cuBLAS"}
HINT = ("pip install 'xor_gpu[cuda]' (NVIDIA's NVRTC and cuBLAS wheels), or set XOR_GPU_CUDA_LIBS "
        "to folders holding a libnvrtc.so.* and a libcublas.so.* that the driver supports "
        "(e.g. /usr/local/cuda/lib64)")
DRIVER_UNKNOWN = "driver unknown (no libcuda.so.1 answered): the libraries are not checked against a driver's CUDA"
# The real NVRTC in a folder whose libnvrtc.so is the front: the front opens this name beside itself.
FRONT_REAL = "libnvrtc-real.so"
Choice = namedtuple("Choice", "nvrtc cublas notes")
Policy = namedtuple("Policy", "driver nvrtc cublas searched notes target")


@dataclasses.dataclass(frozen=True)
class Target:
    """What the libraries are chosen for: the CUDA version (major, minor) of the driver, None
    when none answers, and the compute capabilities of the GPUs a run may use, () when none
    is known (no GPU here; compile-only names its own)."""

    cuda: tuple = None
    gpus: tuple = ()

    @classmethod
    def of(cls, driver, gpu=None):
        """This machine's: its driver and its GPUs (GPU number `gpu` only, for cudaN)."""
        if driver is None:
            return cls()
        gpus = driver.gpus if gpu is None else driver.gpus[gpu:gpu + 1]
        return cls(tuple(driver.version), tuple(dict.fromkeys(gpus)))

    @property
    def needs_front(self):
        """Whether libgpuarray cuts an architecture short here (compute capability 10 or more)."""
        return any(major >= 10 for major, _ in self.gpus)


# --- which to use ------------------------------------------------------------------------

RULES = {  # kind: (does `version` run on a driver of CUDA `driver`, what is compared)
    "nvrtc": (lambda version, driver: tuple(version[:2]) <= tuple(driver), "CUDA"),
    "cublas": (lambda version, driver: version[0] <= driver[0], "CUDA major"),
}


def cannot_compile(candidate, gpu):
    """Why NVRTC `candidate` cannot compile for `gpu` (a compute capability), or None when it
    can (or is too old to say: before CUDA 11.2)."""
    arch, archs = cuda_arch.number(gpu), candidate.archs
    if archs is None or arch in archs:
        return None
    why = f"NVRTC {_text(candidate.version)} cannot compile for {cuda_arch.name(gpu)}"
    if arch < min(archs):
        return f"{why}: dropped in CUDA {candidate.version[0]}"
    return f"{why}: {'newer than it' if arch > max(archs) else 'not among its architectures'}"


def _passed_over(candidate, driver, gpus):
    """Why `candidate` is not used, or None when it is usable."""
    supported, compared = RULES[candidate.kind]
    if driver is not None and not supported(candidate.version, driver):
        limit = _text(driver) if compared == "CUDA" else str(driver[0])
        return f"{LABELS[candidate.kind]} {_text(candidate.version)} is newer than the driver's {compared} {limit}"
    if candidate.kind == "nvrtc":
        return next(filter(None, (cannot_compile(candidate, gpu) for gpu in gpus)), None)
    return None


def choose(candidates, driver, gpus=()):
    """Choice(nvrtc, cublas, notes) from `candidates` (cuda_search.Candidate) in search
    order, for a driver of CUDA `driver` (major, minor), None when unknown, and GPUs of the
    compute capabilities `gpus`. The first of each kind that is usable wins; every one
    passed over on the way gets a note saying why. Pure: plain data in, plain data out."""
    chosen, notes = {}, []
    if driver is None:
        notes.append(DRIVER_UNKNOWN)
    for kind in RULES:
        chosen[kind] = None
        for candidate in (c for c in candidates if c.kind == kind):
            why = _passed_over(candidate, driver, gpus)
            if why is None:
                chosen[kind] = candidate
                break
            notes.append(f"{candidate.path}: {why}, skipped")
    return Choice(chosen["nvrtc"], chosen["cublas"], notes)


def resolve(sources=None, host=None, gpu=None, target=None):
    """Policy(driver, nvrtc, cublas, searched, notes, target): what libgpuarray should get
    here, for `target` (default: this machine's driver and GPUs, GPU number `gpu` only when
    given). `sources` stand for XOR_GPU_CUDA_LIBS (searched first). The search stops at the
    first folder that completes the choice, so later (costlier) folders are not even listed."""
    host = host or Host()
    if sources is not None:
        host = dataclasses.replace(host, environ={**host.environ, "XOR_GPU_CUDA_LIBS": os.pathsep.join(sources)})
    notes = [f"{d}: no such folder (XOR_GPU_CUDA_LIBS)"
             for d in path_list(host.environ.get("XOR_GPU_CUDA_LIBS")) if not os.path.isdir(d)]
    driver, driver_notes = find_driver(host)
    notes += driver_notes
    target = target or Target.of(driver, gpu)
    candidates, searched, choice = [], [], choose([], target.cuda, target.gpus)
    for folder in search_folders(host):
        searched.append(folder)
        found, unreadable = read_candidates(folder)
        candidates += found
        notes += unreadable
        choice = choose(candidates, target.cuda, target.gpus)
        if choice.nvrtc and choice.cublas:
            break
    return Policy(driver, choice.nvrtc, choice.cublas, searched, notes + choice.notes, target)


def problem(policy):
    """Why `policy` is unusable, in one line, or None."""
    missing = [f"{LABELS[k]} (lib{k}.so.*)" for k in LABELS if getattr(policy, k) is None]
    if not missing:
        return None
    skipped = "; ".join(n for n in policy.notes if n != DRIVER_UNKNOWN)
    return (f"no usable {' nor '.join(missing)} found; searched: {', '.join(policy.searched) or 'no folder'}"
            + (f"; {skipped}" if skipped else ""))


def fix(policy):
    """What to do about `problem(policy)`: for GPUs that need another NVRTC, which; then HINT."""
    advice = []
    for gpu in policy.target.gpus if policy.nvrtc is None else ():
        arch = cuda_arch.number(gpu)
        if arch < cuda_arch.DROPPED_BELOW[0]:
            advice.append(f"{cuda_arch.name(gpu)} needs a CUDA 12 NVRTC (CUDA {cuda_arch.DROPPED_BELOW[1]} "
                          "dropped it): a CUDA 12 toolkit, or pip install nvidia-cuda-nvrtc-cu12==12.4.127")
        elif arch in cuda_arch.FIRST_CUDA:
            advice.append(f"{cuda_arch.name(gpu)} needs an NVRTC of CUDA {_text(cuda_arch.FIRST_CUDA[arch])} or "
                          "later that the driver runs (a toolkit of such a CUDA; the cuda extra's NVRTC 13.0 "
                          "runs on drivers of CUDA 13.0 and later)")
    return "; ".join([*advice, HINT])


# --- the folder ----------------------------------------------------------------------

def _wanted_links(policy, front=None):
    """{link name: target} of the folder; with `front` (the NVRTC front's path), libnvrtc.so
    is the front and the real NVRTC is FRONT_REAL."""
    links = {}
    for kind in LABELS:
        chosen = getattr(policy, kind)
        for path in sorted(glob.glob(os.path.join(chosen.folder, f"lib{kind}*.so*"))):
            if os.path.isfile(path) and os.path.basename(path) != f"lib{kind}.so":
                links[os.path.basename(path)] = os.path.abspath(path)
        links[f"lib{kind}.so"] = os.path.basename(chosen.path)  # relative: the link beside it
    if front:
        links[FRONT_REAL], links["libnvrtc.so"] = links["libnvrtc.so"], front
    if policy.driver:
        links["libcuda.so"] = policy.driver.path
    return links


def _link(name, target, folder):
    tmp = os.path.join(folder, f".{name}.tmp{os.getpid()}")
    os.symlink(target, tmp)
    os.replace(tmp, os.path.join(folder, name))


def _make_folder(policy, dest=None, front=None):
    """The folder of links (made or refreshed); the NVRTC front goes in where the target
    needs it, or always with front=True (compile-only records through it)."""
    front = cuda_standin.front() if (policy.target.needs_front if front is None else front) else None
    links = _wanted_links(policy, front)
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


def recording_folder(policy, dest):
    """`doctor --compile-only`'s folder of links at `dest`: the run's, NVRTC always through the
    front, which records what libgpuarray asks of it."""
    return _make_folder(policy, dest, front=True)


def link_folder(sources=None, dest=None, host=None):
    """Create (or refresh) the folder of symlinks for the libraries `resolve` chooses;
    returns its path. DeviceError (one line: why, and the fix) when there are none."""
    policy = resolve(sources, host)
    why = problem(policy)
    if why:
        raise DeviceError(f"{why}: {fix(policy)}")
    return _make_folder(policy, dest)


def loader_folders(host=None, gpu=None, strict=False):
    """Folders to put first on LD_LIBRARY_PATH for a CUDA run (on GPU number `gpu`, or any):
    the folder of links, then the driver's own folder when the loader would not find it
    there by itself (its libcuda.so.1 loads further driver libraries by name). When nothing
    usable is found: DeviceError (why, and the fix) if `strict` and a driver answers, else []
    (without a driver, the run fails at pygpu's initialisation naming libcuda; doctor says why)."""
    policy = resolve(host=host, gpu=gpu)
    why = problem(policy)
    if why and strict and policy.driver:
        raise DeviceError(f"{why}: {fix(policy)}")
    if why:
        return []
    try:
        folders = [_make_folder(policy)]
    except private_folder.UnsafeFolder:
        raise  # refused before anything in it loads
    except (OSError, DeviceError) as exc:  # DeviceError: the NVRTC front could not be built
        if strict:
            raise DeviceError(f"cannot make the folder of NVIDIA library links: {exc}") from None
        return []
    if policy.driver and not policy.driver.on_loader_path:
        folders.append(os.path.dirname(policy.driver.path))
    return folders


def describe(sources=None, host=None, gpu=None):
    """The choice as a record (results.doctor.CudaLibs), for doctor and check: the driver and
    the GPUs chosen for, each library with its version, the folder of links (and whether
    libnvrtc.so there is the NVRTC front), what was searched, notes on every library skipped,
    and when nothing usable is found the problem and its fix."""
    policy = resolve(sources, host, gpu)
    why, how, folder = problem(policy), None, None
    if why:
        how = fix(policy)
    else:
        try:
            folder = _make_folder(policy)
        except OSError as exc:
            why, how = f"cannot make the folder of links: {exc}", "make ~/.cache writable (or set HOME)"
        except private_folder.UnsafeFolder as exc:
            why, how = str(exc), private_folder.CACHE_HOME_FIX
        except DeviceError as exc:  # the NVRTC front could not be built
            why, how = f"cannot make the folder of links: {exc}", "install a C compiler (apt-get install gcc)"
    driver = policy.driver
    return CudaLibs(
        driver=_text(driver.version) if driver else None, libcuda=driver.path if driver else None,
        gpus=[cuda_arch.name(gpu) for gpu in policy.target.gpus], nvrtc=library(policy.nvrtc),
        cublas=library(policy.cublas), folder=folder, nvrtc_front=bool(folder) and policy.target.needs_front,
        searched=policy.searched, notes=policy.notes, problem=why, fix=how)


def library(candidate):
    """The Library record of a cuda_search.Candidate (None: none chosen)."""
    return candidate and Library(path=candidate.path, version=_text(candidate.version))
