"""PyTensor as an engine: its flags, the import, each backend's compile mode, and the proof
that the device in use is the one requested (the same duties as backend.py for Theano).

PyTensor 3's default mode compiles with Numba; its C backend (the one Theano had) must be
asked for: Mode(linker="cvm"). It links the BLAS Theano links (OpenBLAS when installed),
so that the two C engines compute the same way.
"""
import os
import platform
import sys

from xor_gpu import engines
from xor_gpu.backend import PORTABLE_CXXFLAGS, blas_of, cpu_name, default_blas_ldflags, op_names
from xor_gpu.errors import DeviceError


def import_pytensor(engine, device, floatx):
    """Import PyTensor for `engine` on `device`; for pytensor-jax, JAX must see that device."""
    if engine == "pytensor-jax":
        # JAX takes a GPU when it sees one and quietly runs on the CPU when not: pin the
        # platform, then check what it found.
        os.environ["JAX_PLATFORMS"] = "cpu" if device == "cpu" else "cuda"
        if floatx == "float64":
            os.environ["JAX_ENABLE_X64"] = "1"
    user = os.environ.get("PYTENSOR_FLAGS", "")
    # As for Theano: the same BLAS and portable code (bits that do not depend on the CPU
    # model); the user's flags come after ours, device and floatX last.
    defaults = f"blas__ldflags={default_blas_ldflags()},gcc__cxxflags={PORTABLE_CXXFLAGS.get(platform.machine(), '')}"
    os.environ["PYTENSOR_FLAGS"] = ",".join(f for f in (defaults, user, f"floatX={floatx}") if f)
    try:
        import pytensor
    except ImportError as exc:
        raise DeviceError(f"cannot import PyTensor: {exc}") from None
    finally:
        os.environ["PYTENSOR_FLAGS"] = user
    if engine == "pytensor-jax":
        _verify_jax(device)
    return pytensor


def _verify_jax(device):
    try:
        import jax

        found = jax.devices()
    except Exception as exc:  # noqa: BLE001 - JAX raises RuntimeError and others for a missing GPU
        raise DeviceError(f"device {device} is not usable by pytensor-jax: JAX found no "
                          f"{'GPU' if device != 'cpu' else 'CPU'} ({' '.join(str(exc).split())[:300]})") from None
    wanted = "cpu" if device == "cpu" else "gpu"
    if not found or found[0].platform != wanted:
        raise DeviceError(f"device {device} requested but JAX runs on {found[0].platform if found else 'nothing'}")


def mode(engine):
    """The compile mode of `engine`'s backend."""
    from pytensor.compile.mode import Mode

    return Mode(linker=engines.get(engine).linker, optimizer="fast_run")


LINKER_CLASSES = {"cvm": "VMLinker", "numba": "NumbaLinker", "jax": "JAXLinker"}


def verify_graph(function, engine):
    """The compiled function runs on the linker asked for (never a quiet fallback)."""
    linker = type(function.maker.linker).__name__
    if linker != LINKER_CLASSES[engines.get(engine).linker]:
        raise DeviceError(f"engine {engine} requested but PyTensor compiled with {linker}")
    return op_names(function)


def active_device(engine, device):
    """(device, its name) as the engine sees it."""
    if engine == "pytensor-jax":
        import jax

        found = jax.devices()[0]
        return device, f"{found.device_kind} (JAX {found.platform})"
    return "cpu", cpu_name()


def versions(engine):
    import numpy

    import pytensor

    found = {"python": platform.python_version(), "pytensor": pytensor.__version__, "numpy": numpy.__version__}
    for name in {"pytensor-numba": ["numba"], "pytensor-jax": ["jax", "jaxlib"]}.get(engine, []):
        found[name] = sys.modules[name].__version__ if name in sys.modules else __import__(name).__version__
    return found


def blas_info(engine):
    """The BLAS of the C backend ("ldflags", "library", "version"); Numba and JAX bring their own."""
    linker = engines.get(engine).linker
    if linker != "cvm":
        return {"ldflags": None, "library": f"{linker}'s own", "version": None}
    import pytensor

    return blas_of(pytensor.config.blas__ldflags)
