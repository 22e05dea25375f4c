"""The Theano backend: flags set before import, the import itself, and proof of the device.

Theano reads THEANO_FLAGS once, at import, and binds the device for the life of the
process. When it cannot initialise a requested GPU it logs an error and quietly runs on
the CPU; everything here exists so that such a run is refused instead.
"""
import logging
import os
import platform
import sys

from xor_gpu.compile_cache import compiledir, rebuild_on_load_failure, repair
from xor_gpu.config import check_device
from xor_gpu.errors import DeviceError

# Portable code generation: the same float results and the same compile-cache keys on any
# CPU of the family. Theano otherwise expands -march=native into the cache key.
PORTABLE_CXXFLAGS = {"x86_64": "-march=x86-64 -mtune=generic", "aarch64": "-march=armv8-a"}
TEN_YEARS = 10 * 365 * 24 * 3600  # compiled modules are kept, not aged out after 24 days


def theano_flags(device, floatx, user_flags=None):
    """THEANO_FLAGS for this run: our defaults, then the user's own flags, then device and floatX.

    Theano applies the last value given for a key, so the user may override any default
    (e.g. blas.ldflags), while device and floatX always come from the command line. A
    user's gcc.cxxflags are added after the portable ones (e.g. -I for headers) rather
    than replacing them; a -march of the user's still wins, as gcc takes the last one.
    """
    defaults = {
        # Empty: Theano calls BLAS through numpy's C-API (numpy's own OpenBLAS). Measured on the
        # seed config: 0 modules recompiled per process and 0.8 s per run, against 1 module
        # (1.2 s) plus 0.4 s training with -lopenblas, which also needs libopenblas-dev.
        "blas.ldflags": "",
        "compiledir": compiledir(),
        "cmodule.age_thresh_use": str(TEN_YEARS),
        "print_active_device": "False",  # the report names the device; keep stderr for errors
        "gcc.cxxflags": PORTABLE_CXXFLAGS.get(platform.machine(), ""),
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


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        # Theano logs "Could not initialize pygpu" with the real cause in exc_info.
        cause = record.exc_info[1] if record.exc_info else None
        self.messages.append(f"{record.getMessage()}: {cause}" if cause else record.getMessage())


def import_theano(device, floatx):
    """Import Theano bound to `device` and verify that this device is the one in use.

    Returns the theano module. Raises DeviceError when a GPU was requested and Theano fell
    back to the CPU, or when Theano was already imported with other settings.
    """
    check_device(device)
    if "theano" in sys.modules:
        import theano

        if theano.config.device != device or theano.config.floatX != floatx:
            raise DeviceError(
                f"Theano is already imported with device={theano.config.device}, "
                f"floatX={theano.config.floatX} in this process; {device}/{floatx} needs a new process"
            )
        _verify_context(theano, device, [])
        return theano

    repair()  # damaged modules would crash Theano (SIGBUS, ImportError): remove them first
    user_flags = os.environ.get("THEANO_FLAGS")
    os.environ["THEANO_FLAGS"] = theano_flags(device, floatx)
    os.makedirs(compiledir(), exist_ok=True)
    # The empty blas.ldflags above is deliberate; Theano warns about it on every import.
    logging.getLogger("theano.tensor.blas").setLevel(logging.ERROR)
    capture = _Capture()
    gpu_logger = logging.getLogger("theano.gpuarray")
    gpu_logger.addHandler(capture)
    gpu_logger.propagate = False  # Theano would print the failure as a traceback; we raise instead
    try:
        import theano
        import theano.gpuarray  # noqa: F401  (initialises pygpu when a GPU device is set)
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
    rebuild_on_load_failure()
    _verify_context(theano, device, capture.messages)
    return theano


def _verify_context(theano, device, errors):
    if device == "cpu":
        return
    if not theano.gpuarray.pygpu_activated:
        cause = errors[-1] if errors else "pygpu support is not active"
        raise DeviceError(
            f"device {device} requested but Theano could not initialise it ({_one_line(cause)}); "
            f"run 'xor-gpu doctor --device {device}'"
        )
    kind = active_context(theano).kind.decode()
    if not device.startswith(kind):
        raise DeviceError(f"device {device} requested but the active context is {kind}")


def active_context(theano):
    from theano.gpuarray.type import get_context

    return get_context(None)


def active_device(theano):
    """(device string, human-readable name) of what Theano actually runs on."""
    if theano.config.device == "cpu" or not theano.gpuarray.pygpu_activated:
        return "cpu", cpu_name()
    ctx = active_context(theano)
    return theano.config.device, ctx.devname.strip()


def cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def op_names(function):
    return [type(node.op).__name__ for node in function.maker.fgraph.toposort()]


# The ops that carry the arithmetic of the XOR step. On a GPU each must be a Gpu op;
# transfers (HostFromGpu of the returned cost) and shape-only ops are allowed on the host.
HEAVY_OPS = ("Dot22", "Gemm", "Gemv", "Dot", "Elemwise", "CAReduce", "Sum", "Softmax")


def verify_graph(function, device):
    """Refuse a compiled function whose arithmetic does not run where it was asked to."""
    names = op_names(function)
    gpu_ops = [n for n in names if n.startswith("Gpu")]
    if device == "cpu":
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


def versions(theano=None):
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__}
    if theano is not None:
        out["theano"] = theano.__version__
    try:
        import pygpu

        out["pygpu"] = pygpu.__version__
    except Exception:  # noqa: BLE001 - absent or broken pygpu is simply not reported here
        pass
    return out


def _one_line(text):
    return " ".join(str(text).split())
