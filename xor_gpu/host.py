"""What this machine gives a run: the CPU's name, the portable compiler flags of its family,
and the BLAS library a C engine links (found on disk, and seen in /proc/self/maps once
loaded) with the OpenBLAS kernels it runs. Plain Python: used by the engines, the
benchmarks and the doctor alike.
"""
import ctypes
import dataclasses
import os
import platform

from xor_gpu.errors import DeviceError
from xor_gpu.results.train_report import Blas, BlasKernels

# Portable code generation: the same float results and the same compile-cache keys on any
# CPU of the family. Theano otherwise expands -march=native into the cache key. x86-64's
# baseline has no fused multiply-add, so g++ cannot contract a*b+c there; every aarch64 CPU
# has one, and g++ contracts by default (-ffp-contract=fast), each version where it sees fit:
# off, the compiled modules compute exactly as written, as on x86-64, whatever the node's g++
# (measured: g++ 12 contracted nothing in this network's modules, so the weights are the same
# with and without; the flag makes that hold for any graph and compiler).
PORTABLE_CXXFLAGS = {"x86_64": "-march=x86-64 -mtune=generic", "aarch64": "-march=armv8-a -ffp-contract=off"}

# Debian's OpenBLAS, linked into the compiled modules by its soname: the runtime package
# (libopenblas0-pthread, or any other libopenblas0-*) is enough, the -dev one is not needed.
OPENBLAS = "libopenblas.so.0"
NUMPY_BLAS = "numpy C-API"

# OpenBLAS (built with DYNAMIC_ARCH, as Debian's is) picks its kernels by the CPU it detects,
# and each kernel family sums in its own order: the same float32 training ends with other bits
# on another CPU. Measured with OpenBLAS 0.3.21 on the seed config (final weights' sha256), the
# same on an AMD EPYC and an Intel Xeon for each family: SkylakeX and Cooperlake 4d8d0ca2...,
# Haswell 579489d6..., Sandybridge and Prescott c55b4dc9..., Nehalem ffaf937c..., Core2
# 91c9ff61...; and 0.3.21 does not recognise every Xeon (one took Prescott, the slowest). So a
# run pins one family that every x86-64 server of the last decade runs (AVX2 and FMA: Intel
# since 2013, AMD since 2015), and a CPU run ends with the same bits on every such host. Speed
# (benchmarks/bench.py, kernels-* variants): on the seed config Haswell, Sandybridge and Nehalem
# are within noise of each other on both CPUs (EPYC: 411k, 385k, 396k steps/s; Xeon: 345k,
# 346k, 341k), Core2 and Prescott 30% slower on the Xeon; with 1,024 hidden units Haswell trains
# 45k steps/s, Nehalem 38k, Sandybridge 18k. SkylakeX (+14%) needs AVX-512, which many servers
# lack. A user's own OPENBLAS_CORETYPE wins; the report says who chose.
# On aarch64 0.3.21 picks by the core's part number: Neoverse N1 neoversen1, V1 neoversev1 and
# N2 neoversen2 (SVE kernels, whose vectors are 128 to 512 bits wide by core), and for any core
# it does not know its generic armv8 kernels: Neoverse V2 (Grace) is one (Debian's build
# compares the part with those of A53, A55, A57, A72, A73, N1, V1 and N2 only). The package pins
# armv8: plain ARMv8 NEON, which every CPU Debian's arm64 runs on has (nothing to check for),
# and what a GH200 node runs anyway. Measured under emulation (qemu-user 7.2): armv8,
# neoversen1, cortexa57, thunderx2t99, neoversev1 and neoversen2 (SVE, at qemu's 512 bits) end
# the seed config with the same weights, and those of the x86-64 Haswell kernels (579489d6...):
# both fuse each multiply-add of these small products in the same order. Speed: bench.py.
#
# What each x86-64 kernel family of OpenBLAS 0.3 runs, by its name in OPENBLAS_CORETYPE (case
# aside, as OpenBLAS matches it) and the instructions' names in /proc/cpuinfo. OpenBLAS runs the
# family it is told to without asking the CPU: one the CPU lacks dies of SIGILL at the first
# call (a site-wide module setting SkylakeX, on a node without AVX-512). Families not listed are
# left to OpenBLAS.
OPENBLAS_FAMILIES = {
    "prescott": ("pni",), "core2": ("ssse3",), "penryn": ("sse4_1",), "dunnington": ("sse4_1",),
    "nehalem": ("sse4_2",), "atom": ("ssse3",), "sandybridge": ("avx",), "haswell": ("avx2", "fma"),
    "zen": ("avx2", "fma"), "skylakex": ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"),
    "cooperlake": ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_bf16"),
}
OPENBLAS_KERNELS = {"x86_64": ("Haswell", OPENBLAS_FAMILIES["haswell"]), "aarch64": ("armv8", ())}
CORETYPE = "OPENBLAS_CORETYPE"


def cache_home(environ=None):
    """The user's cache folder: $XDG_CACHE_HOME, else ~/.cache."""
    environ = os.environ if environ is None else environ
    return environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def cache_folder(name, environ=None):
    """Where the package keeps a cache of its own: $XDG_CACHE_HOME/xor_gpu/NAME, else
    ~/.cache/xor_gpu/NAME (the offline bundle points XDG_CACHE_HOME into its --cache folder)."""
    return os.path.join(cache_home(environ), "xor_gpu", name)


def portable_cxxflags():
    return PORTABLE_CXXFLAGS.get(platform.machine(), "")


def standard_folders():
    """Where the linker and the loader look for shared libraries by themselves."""
    machine = platform.machine()
    return [f"/usr/lib/{machine}-linux-gnu", f"/lib/{machine}-linux-gnu", "/usr/lib64", "/usr/lib"]


def loader_path():
    return [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]


def default_blas_ldflags():
    """The BLAS a C engine links by default: OpenBLAS when installed, else empty (numpy's C-API).

    Measured on the seed config, warm, side by side: OpenBLAS trains 1.9x as many steps/s as
    Theano's calls through numpy's C-API with one step per call, 4.3x with ten. A folder that
    only LD_LIBRARY_PATH names (the offline bundle's) is also given to the linker, which does
    not read that variable.
    """
    if any(os.path.exists(os.path.join(f, OPENBLAS)) for f in standard_folders()):
        return f"-l:{OPENBLAS}"
    for folder in loader_path():
        if os.path.exists(os.path.join(folder, OPENBLAS)):
            return f"-L{folder} -l:{OPENBLAS}"
    return ""


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty when unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def openblas_kernels(environ=None, flags=None):
    """BlasKernels(family, chosen_by): the OpenBLAS kernels a run asks for, and who chose them:
    the user (their OPENBLAS_CORETYPE), xor_gpu (OPENBLAS_KERNELS of this architecture, where
    the CPU has its instructions), or OpenBLAS itself (family None: the CPU lacks them, or the
    package pins none for this architecture)."""
    environ = os.environ if environ is None else environ
    if environ.get(CORETYPE):
        return BlasKernels(family=environ[CORETYPE], chosen_by=CORETYPE)
    if platform.machine() not in OPENBLAS_KERNELS:
        return BlasKernels(chosen_by=f"OpenBLAS (none pinned for {platform.machine()})")
    family, needs = OPENBLAS_KERNELS[platform.machine()]
    flags = cpu_flags() if needs and flags is None else flags
    missing = [f for f in needs if f not in flags]
    if missing:
        return BlasKernels(chosen_by=f"OpenBLAS (this CPU lacks {' and '.join(missing)})")
    return BlasKernels(family=family, chosen_by="xor_gpu")


def kernels_problem(environ=None, flags=None):
    """(problem, fix) when the user's OPENBLAS_CORETYPE names kernels this CPU cannot run, else None."""
    environ = os.environ if environ is None else environ
    family = environ.get(CORETYPE, "")
    flags = cpu_flags() if flags is None else flags
    missing = [f for f in OPENBLAS_FAMILIES.get(family.strip().lower(), ()) if f not in flags]
    if not missing or platform.machine() != "x86_64":
        return None
    runs = next((f for f in (OPENBLAS_KERNELS["x86_64"][0], "Prescott") if set(OPENBLAS_FAMILIES[f.lower()]) <= flags),
                None)
    return (f"{CORETYPE}={family} names OpenBLAS kernels that need {', '.join(missing)}, which this CPU "
            f"({cpu_name()}) lacks (they would die of SIGILL)",
            f"unset {CORETYPE}, or name a family this CPU runs" + (f" (e.g. {runs})" if runs else ""))


def load_blas(ldflags):
    """Load the OpenBLAS that `ldflags` link now, with the kernels openblas_kernels() chooses:
    OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded, and the engine's compiled modules
    then use this copy. The variable is set only for that moment: child processes choose for
    themselves. Returns the choice. DeviceError (exit 3) before loading anything when the user's
    OPENBLAS_CORETYPE names kernels this CPU lacks (kernels_problem)."""
    problem = kernels_problem()
    if problem and ldflags.strip():
        raise DeviceError("; ".join(problem))
    kernels = openblas_kernels()
    files = linked_files(ldflags.strip()) if ldflags.strip() else []
    if not files or files[0] in loaded_files():
        return kernels
    saved = os.environ.get(CORETYPE)
    if kernels.family:
        os.environ[CORETYPE] = kernels.family
    try:
        ctypes.CDLL(files[0], mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass  # not loadable: the engine's own link step says why
    finally:
        if saved is None:
            os.environ.pop(CORETYPE, None)
    return kernels


def blas_of(ldflags):
    """The Blas behind a compiler that links with `ldflags`.

    library: the file the ldflags name, when this process loaded it (a CPU run; a GPU run
    calls the device's BLAS and loads none: None); "numpy C-API" for empty ldflags.
    version: OpenBLAS's own description (version, and the CPU kernels it runs), else None.
    kernels: BlasKernels of a loaded OpenBLAS, the family as OpenBLAS names the kernels it
    runs; None otherwise.
    """
    loaded = loaded_files()
    return _with_kernels(_blas(ldflags, lambda path: path in loaded))


def installed_blas():
    """The BLAS a C engine links here by default, found on disk (`xor-gpu doctor` imports no
    engine) and loaded as a run loads it (load_blas): as blas_of(), with the problem (for the
    doctor's advice) when it is not loaded because of kernels_problem()."""
    ldflags = default_blas_ldflags()
    problem = kernels_problem() if ldflags else None
    if problem:
        return dataclasses.replace(_blas(ldflags, lambda path: False), problem=list(problem))
    load_blas(ldflags)
    return _with_kernels(_blas(ldflags, lambda path: True))


def _with_kernels(found):
    if found.version:
        found.kernels = dataclasses.replace(openblas_kernels(), family=openblas_corename(found.library))
    return found


def _blas(ldflags, counts):
    """Blas(ldflags, library, version, kernels None): library, the first file ldflags name that counts."""
    ldflags = ldflags.strip()
    if not ldflags:
        return Blas(ldflags="", library=NUMPY_BLAS)
    library = next((p for p in linked_files(ldflags) if counts(p)), None)
    return Blas(ldflags=ldflags, library=library, version=openblas_config(library))


def linked_files(ldflags):
    """The real paths of the shared libraries that ldflags' -l options name."""
    words = ldflags.split()
    folders = [w[2:] for w in words if w.startswith("-L")] + loader_path() + standard_folders()
    names = [w[3:] if w.startswith("-l:") else f"lib{w[2:]}.so" for w in words if w.startswith("-l")]
    return [os.path.realpath(os.path.join(folder, name)) for name in names for folder in folders
            if os.path.exists(os.path.join(folder, name))]


def loaded_files():
    """The files mapped into this process (address, perms, offset, device, inode, path)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split(None, 5) for line in f]
    except OSError:
        return set()
    return {row[5] for row in rows if len(row) == 6 and row[5].startswith("/")}


def openblas_config(library):
    """OpenBLAS's openblas_get_config() of `library`; None for another BLAS, or none."""
    return _openblas_text(library, "openblas_get_config")


def openblas_corename(library):
    """The kernel family a loaded OpenBLAS runs (openblas_get_corename(), e.g. "Haswell")."""
    return _openblas_text(library, "openblas_get_corename")


def _openblas_text(library, function):
    if library is None:
        return None
    try:
        get = getattr(ctypes.CDLL(library), function)
    except (OSError, AttributeError):  # not OpenBLAS
        return None
    get.restype = ctypes.c_char_p
    return get().decode().strip()


def cuda_driver():
    """(driver CUDA version 'major.minor', [GPU names]) or (None, []) without a driver."""
    try:
        cu = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, []
    v = ctypes.c_int()
    if cu.cuDriverGetVersion(ctypes.byref(v)) != 0:
        return None, []
    version = f"{v.value // 1000}.{v.value % 1000 // 10}"
    if cu.cuInit(0) != 0:
        return version, []
    n = ctypes.c_int()
    cu.cuDeviceGetCount(ctypes.byref(n))
    names = []
    for i in range(n.value):
        dev, buf = ctypes.c_int(), ctypes.create_string_buffer(256)
        cu.cuDeviceGet(ctypes.byref(dev), i)
        cu.cuDeviceGetName(buf, 256, dev)
        names.append(buf.value.decode(errors="replace"))
    return version, names


def cuda_missing():
    """Why this machine has no usable CUDA GPU, in words, or None when it has one."""
    version, gpus = cuda_driver()
    if version is None:
        return "no NVIDIA driver (libcuda.so.1 does not load)"
    if not gpus:
        return f"NVIDIA driver {version} present but it sees no GPU"
    return None
