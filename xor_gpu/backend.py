"""The Theano backend: flags set before import, the import itself, and proof of the device.

Theano reads THEANO_FLAGS once, at import, and binds the device for the life of the
process. When it cannot initialise a requested GPU it logs an error and quietly runs on
the CPU; everything here exists so that such a run is refused instead.
"""
import contextlib
import hashlib
import logging
import os
import platform
import sys
import warnings

from xor_gpu import compile_cache, compile_lock, cuda_search, cuda_standin, devices, host
from xor_gpu.compile_cache import compiledir, make_private, repair
from xor_gpu.errors import DeviceError
from xor_gpu.results.train_report import Cudnn

TEN_YEARS = 10 * 365 * 24 * 3600  # compiled modules are kept, not aged out after 24 days
# Theano takes cuDNN where it finds it, for this network only the cost's sum (GpuDnnReduction
# instead of libgpuarray's own reduction kernels): then a node with cuDNN runs other kernels
# than one without, and Theano 1.0.5 warns in every process that cuDNN 8+ is newer than it
# knows. Measured on an H200 (cuDNN 9): the same weights bitwise either way, and 10-25% faster
# without. So cuDNN is off unless the user's THEANO_FLAGS say dnn.enabled=True; reports record
# the choice (cudnn_of).
CUDNN_DEFAULT = "False"


def theano_flags(device, floatx, user_flags=None):
    """THEANO_FLAGS for this run on `device` (a Device): our defaults, then the user's own flags,
    then device and floatX.

    Theano applies the last value given for a key, so the user may override any default
    (e.g. blas.ldflags), while device and floatX always come from the command line. A
    user's gcc.cxxflags are added after the portable ones (e.g. -I for headers) rather
    than replacing them; a -march of the user's still wins, as gcc takes the last one.
    """
    defaults = {
        "blas.ldflags": host.default_blas_ldflags(),
        "compiledir": compiledir(),
        "cmodule.age_thresh_use": str(TEN_YEARS),
        "print_active_device": "False",  # the report names the device; keep stderr for errors
        "dnn.enabled": CUDNN_DEFAULT,
        "gcc.cxxflags": host.portable_cxxflags(),
    }
    user = os.environ.get("THEANO_FLAGS", "") if user_flags is None else user_flags
    parts = []
    for part in (p.strip() for p in user.split(",") if p.strip()):
        key, _, value = part.partition("=")
        if key.strip() == "gcc.cxxflags":
            defaults["gcc.cxxflags"] = f"{defaults['gcc.cxxflags']} {value.strip()}".strip()
        else:
            parts.append(part)
    parts = [f"{k}={v}" for k, v in defaults.items() if k != "gcc.cxxflags" or v] + parts
    parts += [f"device={device}", f"floatX={floatx}"]
    return ",".join(parts)


def _flag(flags, key):
    """The value Theano takes for `key` from THEANO_FLAGS `flags`: the last one given."""
    values = [value for name, _, value in (part.partition("=") for part in flags.split(",")) if name.strip() == key]
    return values[-1].strip() if values else None


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        # Theano logs "Could not initialize pygpu" with the real cause in exc_info.
        cause = record.exc_info[1] if record.exc_info else None
        self.messages.append(f"{record.getMessage()}: {cause}" if cause else record.getMessage())


def import_theano(device, floatx):
    """Import Theano bound to `device` (a Device) and verify that this device is the one in use.

    Returns the theano module. Raises DeviceError when a GPU was requested and Theano fell
    back to the CPU, or when Theano was already imported with other settings.
    """
    if "theano" in sys.modules:
        import theano

        if not device.is_named(theano.config.device) or theano.config.floatX != floatx:
            raise DeviceError(
                f"Theano is already imported with device={theano.config.device}, "
                f"floatX={theano.config.floatX} in this process; {device}/{floatx} needs a new process"
            )
        _verify_context(theano, device, [])
        return theano

    flags = theano_flags(device, floatx)
    # Before anything in them is loaded: caches another user could change are refused (the
    # compiledir Theano takes: the user's THEANO_FLAGS may name one).
    make_private(_flag(flags, "compiledir"), opencl=device.is_opencl)
    repair()  # damaged modules would crash Theano (SIGBUS, ImportError): remove them first
    user_flags = os.environ.get("THEANO_FLAGS")
    os.environ["THEANO_FLAGS"] = flags
    # The empty blas.ldflags above is deliberate; Theano warns about it on every import.
    logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
    capture = _Capture()
    gpu_logger = logging.getLogger("theano.gpuarray")
    gpu_logger.addHandler(capture)
    gpu_logger.propagate = False  # Theano would print the failure as a traceback; we raise instead
    try:
        with _hidden("scipy"), _stdlib_distutils(), compile_cache.theano_importing():
            import theano
    except ImportError as exc:
        raise DeviceError(f"cannot import Theano: {exc}") from None
    finally:
        gpu_logger.removeHandler(capture)
        gpu_logger.propagate = True
        # Theano has read them; child processes start from the user's own flags again.
        if user_flags is None:
            os.environ.pop("THEANO_FLAGS", None)
        else:
            os.environ["THEANO_FLAGS"] = user_flags
    if device.is_cpu:  # a GPU run calls the device's BLAS and loads none on the host
        host.load_blas(theano.config.blas.ldflags)  # before any compiled module links it
    compile_cache.theano_imported(theano)
    _one_line_optimizer_errors()
    _version_ops_without_props(theano)
    _stable_cop_versions(theano)
    _verify_context(theano, device, capture.messages)
    return theano


class _OptimizerErrors(logging.Handler):
    """Theano logs an optimization that failed (e.g. a constant folded by a compile on a full
    disk) as several records ending in a traceback, then goes on without it: one warning
    line instead, naming the optimization and the error."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.what = "an optimization"

    def emit(self, record):
        text = record.getMessage()
        for head in ("Optimization failure due to: ", "SeqOptimizer apply "):
            if text.startswith(head):
                self.what = _one_line(text[len(head):])[:120]
                return
        if text.startswith(("node: ", "TRACEBACK:", "Traceback:")):
            return
        if text.startswith("Traceback (most recent call last)"):
            text = f"Theano skipped {self.what}: {(text.strip().splitlines() or [''])[-1]}"
        print(f"xor-gpu: warning: {_one_line(text)[:400]}", file=sys.stderr, flush=True)


def _one_line_optimizer_errors():
    logger = logging.getLogger("theano.gof.opt")
    if not any(isinstance(h, _OptimizerErrors) for h in logger.handlers):
        logger.addHandler(_OptimizerErrors())
        logger.propagate = False  # not also through Theano's own handler, traceback and all


# What `import theano` needs, and nothing else: a run on the CPU imports neither pygpu nor
# theano.gpuarray (Theano imports them itself for a GPU device), nor the two below.

@contextlib.contextmanager
def _hidden(name):
    """Make `import name` fail inside the block, unless it is imported already.

    Theano treats scipy as optional and imports it (0.4 s) only for ops this network never
    uses (theano.scalar.basic_scipy, slinalg); without it the compiled graphs, the compile
    cache keys and the results are the same (the offline bundle runs without scipy).
    """
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # the import system's "not importable" marker
    try:
        yield
    finally:
        del sys.modules[name]


@contextlib.contextmanager
def _stdlib_distutils():
    """Let Theano's `import distutils` find the standard library's copy.

    setuptools' import hook (distutils-precedence.pth, in every virtualenv with setuptools)
    would answer it by importing all of setuptools and pkg_resources, 0.2 s that Theano's
    two uses (distutils.spawn, distutils.sysconfig) do not need.
    """
    hooks = [f for f in sys.meta_path if type(f).__module__ == "_distutils_hack"]
    for hook in hooks:
        sys.meta_path.remove(hook)
    try:
        with warnings.catch_warnings():  # Python 3.11 deprecates distutils; Theano 1.0.5 uses it
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        sys.meta_path[:0] = hooks


def _version_ops_without_props(theano):
    """Let Theano's compile cache keep the modules of ops that have no properties.

    Theano 1.0.5 builds a module's cache version from each op's C code version and its
    `__props__` (theano/gof/cc.py, CLinker.cmodule_key_), and treats any empty element as
    "unversioned": such a module is compiled again in every process and deleted at exit.
    Ops without properties (Dot22 when Theano links a BLAS library, GpuDot22, HostFromGpu)
    have `__props__ == ()`, so about 1 s of compilation recurred in every run. Their
    equality, hash and str were generated from the empty tuple when their classes were
    created (theano/gof/utils.py, MetaObject), so a non-empty `__props__` given now changes
    only the cache version. `default_output` is an attribute every op has, and the same
    (None) on all of these, so naming it changes no op's meaning. An op whose C code is
    really unversioned still says so through its c_code_cache_version().
    """
    op_class = theano.gof.Op
    pending, seen = [op_class], set()
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                pending.append(sub)
                if sub.__dict__.get("__props__") == ():
                    sub.__props__ = ("default_output",)


def _stable_cop_versions(theano):
    """Make the cache version of COp-based ops (DimShuffle, ...) the same in every process.

    COp versions its C code by Python's hash() of the code's text, which changes from one
    process to the next unless PYTHONHASHSEED is fixed: every new process would miss the
    compile cache. The first element of the version is replaced by a digest of that text.
    """
    cop = theano.gof.COp
    versions = cop.c_code_cache_version
    if getattr(versions, "stable", False):
        return

    def c_code_cache_version(self):
        digest = hashlib.sha256("\0".join(self.func_codes).encode()).hexdigest()
        return (int(digest[:16], 16),) + versions(self)[1:]

    c_code_cache_version.stable = True
    cop.c_code_cache_version = c_code_cache_version


def _verify_context(theano, device, errors):
    if device.is_cpu:
        return
    if device.is_cuda:  # first: what fails on compile-only's stand-in is not the GPU's fault
        cuda_standin.refuse_if_loaded()
    if not theano.gpuarray.pygpu_activated:
        cause = errors[-1] if errors else "pygpu support is not active"
        raise DeviceError(
            f"device {device} requested but Theano could not initialise it ({_one_line(cause)}); "
            f"run 'xor-gpu doctor --device {device}'"
        )
    kind = active_context(theano).kind
    if not device.has_context_kind(kind):
        raise DeviceError(f"device {device} requested but the active context is {kind.decode()}")


def active_context(theano):
    from theano.gpuarray.type import get_context

    return get_context(None)


def active_device(theano, device):
    """(device name, human-readable name) of what Theano, bound to `device`, actually runs on."""
    if device.is_cpu or not theano.gpuarray.pygpu_activated:
        return devices.THE_CPU.name, host.cpu_name()
    ctx = active_context(theano)
    return theano.config.device, ctx.devname.strip()


def cudnn_enabled(user_flags=None):
    """Whether a run would let Theano use cuDNN: its dnn.enabled, the user's flags over ours."""
    value = CUDNN_DEFAULT
    for part in theano_flags(devices.THE_CPU, "float32", user_flags).split(","):
        key, _, given = part.partition("=")
        if key.strip() == "dnn.enabled":
            value = given.strip()
    return value != "False"  # Theano's values: auto, True, False, no_check


def cudnn_of(theano, device, ops):
    """What a run on `device` did with cuDNN (results.train_report.Cudnn); None off CUDA."""
    if not device.is_cuda:
        return None
    library, version = cuda_search.find_cudnn()
    return Cudnn(enabled=str(theano.config.dnn.enabled) != "False", used=any(n.startswith("GpuDnn") for n in ops),
                 library=library, version=version)


def op_names(function):
    return [type(node.op).__name__ for node in function.maker.fgraph.toposort()]


# The ops that carry the arithmetic of the XOR step. On a GPU each must be a Gpu op;
# transfers (HostFromGpu of the returned cost) and shape-only ops are allowed on the host.
HEAVY_OPS = ("Dot22", "Gemm", "Gemv", "Dot", "Elemwise", "CAReduce", "Sum", "Softmax")


def verify_graph(function, device):
    """Refuse a compiled function whose arithmetic does not run where it was asked to."""
    names = op_names(function)
    gpu_ops = [n for n in names if n.startswith("Gpu")]
    if device.is_cpu:
        if gpu_ops:
            raise DeviceError(f"device cpu requested but the graph holds GPU ops: {', '.join(gpu_ops)}")
        return names
    host_heavy = [n for n in names if not n.startswith("Gpu") and n.startswith(HEAVY_OPS)]
    if not gpu_ops or host_heavy:
        raise DeviceError(
            f"device {device} requested but the compiled graph runs on the host "
            f"({', '.join(host_heavy) or 'no GPU ops'})"
        )
    return names


class Runtime:
    """Theano as an engine (xor_gpu/engines.py): imported for one device and floatX, with
    the checks and facts every run reports."""

    counts_compiled_modules = True  # Theano's compile cache is ours (PyTensor's are its own)

    def __init__(self, engine, device, floatx):
        self.device = device
        self.module, self.mode = import_theano(device, floatx), None

    def compiled_modules(self):
        return compile_cache.compiled_here()

    def compiling(self):
        """The block that compiles a run's functions: one hold of the compile lock (compile_lock.keeping)."""
        return compile_lock.keeping()

    def compile_cache(self):
        return compile_cache.record()

    def verify_graph(self, function):
        return verify_graph(function, self.device)

    def verify_weights(self, weights):
        """Nothing to add to verify_graph: on a GPU the weights are the graph's GpuArray variables."""

    def active_device(self):
        return active_device(self.module, self.device)

    def versions(self):
        return versions(self.module, self.device)

    def blas(self):
        return blas_info()

    def cudnn(self, ops):
        return cudnn_of(self.module, self.device, ops)

    def nvrtc_arch(self):
        """What xor_gpu's NVRTC front did in this process (NvrtcArch; None below compute capability 10)."""
        return cuda_standin.front_record()


def versions(theano=None, device=None):
    """python, numpy, theano, and pygpu when the run uses it (GPU devices; Theano imported it)."""
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__}
    if theano is not None:
        out["theano"] = theano.__version__
        if not device.is_cpu:
            out["pygpu"] = sys.modules["pygpu"].__version__
    return out


def blas_info():
    """The BLAS behind this process's Theano (host.blas_of)."""
    return host.blas_of(sys.modules["theano"].config.blas.ldflags)


def _one_line(text):
    return " ".join(str(text).split())
