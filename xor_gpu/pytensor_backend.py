"""PyTensor as an engine: its flags, the import, each backend's compile mode, and the proof
that the device in use is the one requested (the same duties as backend.py for Theano).
One class per PyTensor backend; the engine registry (xor_gpu/engines.py) names them.

PyTensor 3's default mode compiles with Numba; its C backend (the one Theano had) must be
asked for: Mode(linker="cvm"). It links the BLAS Theano links (OpenBLAS when installed),
so that the two C engines compute the same way.
"""
import contextlib
import importlib
import importlib.metadata
import os
import platform
import re
import warnings

from xor_gpu import devices, host
from xor_gpu.backend import op_names
from xor_gpu.errors import DeviceError
from xor_gpu.results.train_report import Blas


class CRuntime:
    """PyTensor's C backend (the cvm linker), on the CPU."""

    linker = "cvm"
    linker_class = "VMLinker"  # the class of function.maker.linker when compiled by `linker`
    packages = ("numpy",)  # reported with their versions, besides python and pytensor
    counts_compiled_modules = False  # PyTensor's caches are its own: not counted

    def __init__(self, engine, device, floatx):
        self.engine, self.device = engine, device
        self._before_import(floatx)
        self.module = import_pytensor(floatx)
        self._after_import()
        from pytensor.compile.mode import Mode

        self.mode = Mode(linker=self.linker, optimizer="fast_run")

    def _before_import(self, floatx):
        pass

    def _after_import(self):
        host.load_blas(self.module.config.blas__ldflags)  # the OpenBLAS kernels Theano's runs use

    def compiled_modules(self):
        return None

    def compiling(self):
        """PyTensor's compile cache and its lock are its own."""
        return contextlib.nullcontext()

    def compile_cache(self):
        return None

    def verify_graph(self, function):
        """The compiled function runs on the linker asked for (never a quiet fallback)."""
        return verify_linker(function, self.linker_class, self.engine)

    def verify_weights(self, weights):
        """After training: the shared weights are where the engine computes (C, Numba: numpy
        arrays on the host, nothing to check)."""

    def active_device(self):
        """(device, its name) as the engine sees it."""
        return devices.THE_CPU.name, host.cpu_name()

    def versions(self):
        found = {"python": platform.python_version(), "pytensor": self.module.__version__}
        for name in self.packages:
            found[name] = importlib.import_module(name).__version__
        return found

    def blas(self):
        """The Blas of the C backend."""
        return host.blas_of(self.module.config.blas__ldflags)

    def cudnn(self, ops):
        return None  # Theano's choice; JAX decides for itself, and this network has no convolution

    def nvrtc_arch(self):
        return None  # libgpuarray's NVRTC only


class NumbaRuntime(CRuntime):
    """PyTensor compiled by Numba, on the CPU."""

    linker, linker_class, packages = "numba", "NumbaLinker", ("numpy", "numba")

    def _after_import(self):
        pass  # Numba and JAX bring their own BLAS

    def blas(self):  # Numba and JAX bring their own
        return Blas(library=f"{self.linker}'s own")


JAX_FLOAT64_WARNING = r"Explicitly requested dtype float64 requested in astype is not available"


class JaxRuntime(NumbaRuntime):
    """PyTensor compiled by JAX: the CPU, or an NVIDIA GPU. JAX takes a GPU when it sees one
    and quietly runs on the CPU when not: the platform is pinned, then what it found checked."""

    linker, linker_class, packages = "jax", "JAXLinker", ("numpy", "jax", "jaxlib")

    def _before_import(self, floatx):
        os.environ["JAX_PLATFORMS"] = self.device.kind
        if floatx == "float64":
            os.environ["JAX_ENABLE_X64"] = "1"
        else:
            # PyTensor's JAX backend asks JAX to accumulate the cost's float32 sum in float64
            # (Sum's acc_dtype, as in Theano); JAX without x64 sums in float32 instead, which is
            # what floatX=float32 asks for, and warns about it in every run. That warning alone
            # is hidden (README, Engines); any other of JAX's still shows.
            warnings.filterwarnings("ignore", message=JAX_FLOAT64_WARNING, category=UserWarning)

    def _after_import(self):
        self.jax_device = verify_jax(self.device, jax_devices)

    def active_device(self):
        return self.device.name, f"{self.jax_device.device_kind} (JAX {self.jax_device.platform})"

    def versions(self):
        """As the other engines', and JAX's CUDA plugin on a GPU (jax-cuda13-plugin, say)."""
        found = super().versions()
        for dist in importlib.metadata.distributions() if self.device.is_cuda else ():
            name = dist.metadata["Name"] or ""
            if re.fullmatch(r"jax[-_]cuda\d+[-_]plugin", name):
                found[name] = dist.version
        return found

    def verify_weights(self, weights):
        """The weights stayed on JAX's device from call to call (each call hands back only the
        sampled losses): a GPU run never took them through the host."""
        for w in weights:
            value = w.get_value(borrow=True, return_internal_type=True)
            where = value.devices() if hasattr(value, "devices") else {f"the host ({type(value).__name__})"}
            if where != {self.jax_device}:
                raise DeviceError(f"device {self.device} requested but pytensor-jax kept {w.name} on "
                                  f"{', '.join(sorted(map(str, where)))}, not {self.jax_device}")


def import_pytensor(floatx):
    """Import PyTensor with our flags: the BLAS Theano links and portable code (bits that do not
    depend on the CPU model); the user's flags come after ours, floatX last."""
    user = os.environ.get("PYTENSOR_FLAGS", "")
    defaults = f"blas__ldflags={host.default_blas_ldflags()},gcc__cxxflags={host.portable_cxxflags()}"
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (defaults, user, f"floatX={floatx}") if f)
    try:
        import pytensor
    except ImportError as exc:
        raise DeviceError(f"cannot import PyTensor: {exc}") from None
    finally:
        os.environ["PYTENSOR_FLAGS"] = user
    return pytensor


def jax_devices():
    import jax

    return jax.devices()


def verify_jax(device, listed=jax_devices):
    """The first device `listed()` (JAX's list) returns, when it is on the platform `device`
    (a Device) is; DeviceError otherwise (JAX found nothing, or only the CPU for a GPU run)."""
    try:
        found = listed()
    except Exception as exc:  # noqa: BLE001 - JAX raises RuntimeError and others for a missing GPU
        raise DeviceError(f"device {device} is not usable by pytensor-jax: JAX found no "
                          f"{device.jax_platform.upper()} ({' '.join(str(exc).split())[:300]})") from None
    if not found or not device.is_jax_platform(found[0].platform):
        raise DeviceError(f"device {device} requested but JAX runs on {found[0].platform if found else 'nothing'}")
    return found[0]


def verify_linker(function, linker_class, engine):
    """`function`'s op names, when it was compiled by `linker_class`; DeviceError otherwise."""
    compiled_by = type(function.maker.linker).__name__
    if compiled_by != linker_class:
        raise DeviceError(f"engine {engine} requested but PyTensor compiled with {compiled_by}")
    return op_names(function)
