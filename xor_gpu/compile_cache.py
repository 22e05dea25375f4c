"""Theano's compile cache (the compiledir): where it is, its lock (xor_gpu/compile_lock.py)
put into Theano, repairing damaged modules, and the run's record of it all.

Theano 1.0.5 never rebuilds a damaged compiled module. A truncated .so (what a full disk
or a damaged volume leaves) kills every later run with SIGBUS, without a word, as soon as
a missing page is touched; garbage or an empty file fails with an ImportError naming the
.so; a damaged lazylinker_ext makes Theano silently drop its C virtual machine and fail
later with `name 'CVM' is not defined`.
So before Theano is imported, `repair()` checks the ELF structure of every finished module
and removes the folder of a damaged one: Theano then compiles it again, once, in this run.
`rebuild_on_load_failure()` covers what that check cannot see (a well-formed .so that
still fails to load): Theano compiles that module again, once.
A run killed while it compiles leaves no module to repair: Theano writes a module's key.pkl
last, and a folder without it is ignored; only Theano's own extensions (lazylinker_ext,
cutils_ext) are linked in place, and a truncated one is repaired as above.
"""
import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import shutil
import struct
import sys

from xor_gpu import compile_lock, host, private_folder
from xor_gpu.compile_lock import LOCK_DIR
from xor_gpu.errors import XorGpuError
from xor_gpu.results.train_report import CompileCache

POCL_CACHE = "POCL_CACHE_DIR"

ELF_MAGIC = b"\x7fELF"
ET_DYN = 3
SHT_NOBITS = 8  # a section that occupies no bytes in the file (.bss)
# Per ELF class (e_ident[4]): the header after e_ident; the leading fields of a program header
# and where p_offset, p_filesz are in them; the leading fields of a section header (its
# sh_type, sh_offset, sh_size are fields 1, 4, 5 in both classes).
_LAYOUT = {
    1: ("HHIIIIIHHHHHH", "IIIIII", (1, 4), "IIIIII"),  # ELF32
    2: ("HHIQQQIHHHHHH", "IIQQQQ", (2, 5), "IIQQQQ"),  # ELF64
}


def compiledir():
    """Its real path (as Theano reads it): the folder checked (make_private) is the one used."""
    folder = os.environ.get("XOR_GPU_COMPILEDIR") or host.cache_folder("theano")
    return os.path.realpath(os.path.expanduser(folder))


def pocl_cache(environ=None):
    """PoCL's kernel cache, which PoCL loads the kernels it compiled from: POCL_CACHE_DIR, else
    PoCL's default, $XDG_CACHE_HOME/pocl/kcache or ~/.cache/pocl/kcache."""
    environ = os.environ if environ is None else environ
    return environ.get(POCL_CACHE) or os.path.join(host.cache_home(environ), "pocl", "kcache")


def make_private(directory, opencl):
    """Make (mode 0700) or refuse (private_folder.UnsafeFolder, exit 3) the caches a run loads
    compiled code from, before anything is loaded: the compiledir `directory`, and for an OpenCL
    run PoCL's kernel cache, which PoCL is then given by its real path."""
    private_folder.make(directory, "set XOR_GPU_COMPILEDIR to a folder of your own")
    if opencl:
        os.environ[POCL_CACHE] = private_folder.make(pocl_cache(), f"set {POCL_CACHE} to a folder of your own")


def count_compiled_modules():
    """Module folders in the compiledir: the difference over a compile = new compilations."""
    try:
        return sum(1 for d in os.listdir(compiledir()) if d.startswith("tmp"))
    except FileNotFoundError:
        return 0


# What happened to the compile cache in this run, one line each (a damaged module rebuilt, a
# lock taken over, a long wait): said on stderr when it happens, and kept for the run's report.
EVENTS = []


def note(text):
    print(f"xor-gpu: {text}", file=sys.stderr, flush=True)
    EVENTS.append(text)


def record():
    """The run's CompileCache (the train report's compile_cache): its folder
    (the one Theano took: the user's THEANO_FLAGS may name it), the seconds waited for other
    processes' compile locks, and the events."""
    theano = sys.modules.get("theano")
    return CompileCache(folder=theano.config.compiledir if theano else compiledir(),
                        lock_wait_seconds=round(compile_lock.waited_seconds(), 2), events=list(EVENTS))


@contextlib.contextmanager
def theano_importing():
    """`import theano` in the block uses compile_lock's waiting from its start: Theano compiles
    its own extensions (lazylinker_ext, cutils_ext) while it is imported, under its lock."""
    if "theano.gof.compilelock" in sys.modules:
        compile_lock.install(sys.modules["theano.gof.compilelock"], note)
        yield
        return
    finder = _LockOnImport()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


class _LockOnImport(importlib.abc.MetaPathFinder):
    """Finds theano.gof.compilelock as the import system would, and installs compile_lock into
    it as soon as it has run, before any other module of Theano can take the lock."""

    def find_spec(self, name, path, target=None):
        if name != "theano.gof.compilelock":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            compile_lock.install(module, note)

        spec.loader.exec_module = exec_module
        return spec


def theano_imported(theano):
    """Right after `import theano`: its module cache rebuilds a module that fails to load
    (rebuild_on_load_failure) and keeps the lock through a compilation (compile_lock.keeping)."""
    rebuild_on_load_failure()
    compile_lock.keep_after_compiling(theano.gof.cmodule.ModuleCache)


def compiled_here():
    """Modules this process has compiled (Theano's own count): with other processes compiling
    into the same cache, the cache's folders would count theirs too."""
    from theano.gof.cc import get_module_cache

    return get_module_cache().stats[2]


def elf_damage(path):
    """Why the shared object at `path` cannot be loaded as it is, or None when it is whole:
    a valid ELF header, and the file as long as its segments, sections and header tables say."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            return _damage(f, size)
    except FileNotFoundError:
        return None  # removed meanwhile: nothing left to load
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    except struct.error:
        return "invalid ELF header"


def _damage(f, size):
    if size == 0:
        return "empty file"
    ident = f.read(16)
    if len(ident) < 16 or ident[:4] != ELF_MAGIC:
        return "not an ELF file"
    klass, data = ident[4], ident[5]
    if klass not in _LAYOUT or data not in (1, 2):
        return "invalid ELF header"
    order = "<" if data == 1 else ">"
    header_fmt, phdr_fmt, segment_fields, shdr_fmt = _LAYOUT[klass]
    header, phdr, shdr = (struct.Struct(order + fmt) for fmt in (header_fmt, phdr_fmt, shdr_fmt))
    fields = f.read(header.size)
    if len(fields) < header.size:
        return f"truncated: {size} bytes, shorter than its ELF header"
    e_type, _, _, _, phoff, shoff, _, ehsize, phentsize, phnum, shentsize, shnum, _ = header.unpack(fields)
    if e_type != ET_DYN:
        return "not a shared object"
    if (phnum and phentsize < phdr.size) or (shnum and shentsize < shdr.size):
        return "invalid ELF header"
    needed = max(ehsize, phoff + phnum * phentsize, shoff + shnum * shentsize)
    if needed <= size:  # the tables are in the file: check what they point to
        for p_offset, p_filesz in _entries(f, phdr, phoff, phnum, phentsize, segment_fields):
            needed = max(needed, p_offset + p_filesz)
        for sh_type, sh_offset, sh_size in _entries(f, shdr, shoff, shnum, shentsize, (1, 4, 5)):
            if sh_type != SHT_NOBITS:
                needed = max(needed, sh_offset + sh_size)
    if needed > size:
        return f"truncated: {size} of {needed} bytes"
    return None


def _entries(f, entry, offset, count, stride, picks):
    f.seek(offset)
    table = f.read(count * stride)
    for i in range(count):
        fields = entry.unpack_from(table, i * stride)
        yield tuple(fields[k] for k in picks)


def damaged_modules(directory):
    """[(path of the .so, folder to remove, reason)] for the finished modules of `directory`.

    A tmp* folder is one compiled module; Theano writes its key.pkl last, so one without
    it is a compilation in progress or abandoned (Theano ignores those): left alone.
    Other folders (lazylinker_ext, cutils_ext) hold Theano's own extensions.
    """
    found = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return found
    for name in names:
        folder = os.path.join(directory, name)
        if name == LOCK_DIR or os.path.islink(folder) or not os.path.isdir(folder):
            continue
        try:
            files = os.listdir(folder)
        except OSError:
            continue
        if name.startswith("tmp") and "key.pkl" not in files:
            continue
        for so in sorted(n for n in files if n.endswith(".so")):
            path = os.path.join(folder, so)
            reason = elf_damage(path)
            if reason:
                found.append((path, folder, reason))
    return found


def repair(directory=None):
    """Remove the folder of every damaged module in the compiledir, one warning line each.
    Call before `import theano`. Returns the .so paths removed.

    Raises XorGpuError (one line, exit 1) when a damaged module cannot be removed.
    """
    directory = directory or compiledir()
    if not damaged_modules(directory):  # the usual case: no lock, a few stat() and read() calls
        return []
    removed = []
    # Held while anything is removed, so that a module another process is compiling right now
    # is never mistaken for a damaged one.
    with compile_lock.held(directory, note):
        for path, folder, reason in damaged_modules(directory):  # again: another process may have rebuilt it
            _evict(folder, path, reason)
            removed.append(path)
    return removed


def rebuild_on_load_failure():
    """Make Theano compile a cached module again, once, when loading it fails although it
    looked whole, instead of failing (or, in constant folding, logging hundreds of lines of
    tracebacks on every run). Call after `import theano`; calling it again changes nothing."""
    from theano.gof.cmodule import ModuleCache

    load = ModuleCache.module_from_key  # Theano's only way to a compiled module (theano/gof/cc.py)
    if getattr(load, "rebuilds", False):
        return

    def module_from_key(cache, key, lnk=None, keep_lock=False):
        try:
            return load(cache, key, lnk, keep_lock)
        except ImportError as exc:
            folder = _module_folder(getattr(exc, "path", None), cache.dirname)
            if folder is None or not os.path.isdir(folder):  # not a cached module (a fresh one is removed)
                raise
            message = " ".join(str(exc).replace(f"{exc.path}: ", "").split())
            with compile_lock.held(cache.dirname, note):
                _evict(folder, exc.path, f"fails to load: {message}")
            # Forgets the removed module, so the retry compiles it. Theano warns there that the
            # module "is gone from the file system" (for a cache outside /tmp): the line above
            # has said why already.
            with _quiet("theano.gof.cmodule"):
                cache.refresh()
        return load(cache, key, lnk, keep_lock)

    module_from_key.rebuilds = True
    ModuleCache.module_from_key = module_from_key


@contextlib.contextmanager
def _quiet(logger_name):
    """Only errors from the logger `logger_name` in the block."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _module_folder(path, directory):
    """The direct subfolder of `directory` holding `path`, or None when `path` is not in one."""
    if not path:
        return None
    root = os.path.realpath(directory)
    parts = os.path.relpath(os.path.realpath(path), root).split(os.sep)
    if len(parts) < 2 or parts[0] in (os.pardir, LOCK_DIR):
        return None
    return os.path.join(root, parts[0])


def _evict(folder, path, reason):
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise XorGpuError(f"compile cache module {path} is damaged ({reason}) and cannot be removed "
                          f"({exc.strerror or exc}); delete {folder}") from None
    note(f"warning: compile cache module {path} was damaged ({reason}); rebuilding it")
