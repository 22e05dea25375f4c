"""What this machine gives a run: the CPU's name, the portable compiler flags of its family,
and the BLAS library a C engine links (found on disk, and seen in /proc/self/maps once
loaded). Plain Python: used by the engines, the benchmarks and the doctor alike.
"""
import ctypes
import os
import platform

# Portable code generation: the same float results and the same compile-cache keys on any
# CPU of the family. Theano otherwise expands -march=native into the cache key.
PORTABLE_CXXFLAGS = {"x86_64": "-march=x86-64 -mtune=generic", "aarch64": "-march=armv8-a"}

# Debian's OpenBLAS, linked into the compiled modules by its soname: the runtime package
# (libopenblas0-pthread, or any other libopenblas0-*) is enough, the -dev one is not needed.
OPENBLAS = "libopenblas.so.0"
NUMPY_BLAS = "numpy C-API"


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


def blas_of(ldflags):
    """The BLAS behind a compiler that links with `ldflags`: {"ldflags", "library", "version"}.

    library: the file the ldflags name, when this process loaded it (a CPU run; a GPU run
    calls the device's BLAS and loads none: None); "numpy C-API" for empty ldflags.
    version: OpenBLAS's own description (version, and the CPU kernels it chose), else None.
    """
    loaded = loaded_files()
    return _blas(ldflags, lambda path: path in loaded)


def installed_blas():
    """The BLAS a C engine links here by default, as found on disk before any run loads it
    (`xor-gpu doctor` imports no engine): {"ldflags", "library", "version"} as blas_of()."""
    return _blas(default_blas_ldflags(), lambda path: True)


def _blas(ldflags, counts):
    """{"ldflags", "library", "version"}: library, the first file ldflags name that counts."""
    ldflags = ldflags.strip()
    if not ldflags:
        return {"ldflags": "", "library": NUMPY_BLAS, "version": None}
    library = next((p for p in linked_files(ldflags) if counts(p)), None)
    return {"ldflags": ldflags, "library": library, "version": openblas_config(library)}


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
    if library is None:
        return None
    try:
        config = ctypes.CDLL(library).openblas_get_config
    except (OSError, AttributeError):  # not OpenBLAS
        return None
    config.restype = ctypes.c_char_p
    return config().decode().strip()
