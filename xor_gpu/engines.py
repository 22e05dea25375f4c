"""The engines that compile the network: Theano (the seed's) and PyTensor, its maintained
successor, with each of PyTensor's backends. One model definition (xor_gpu/model.py)
serves them all; plain Python here, so input is checked before anything is imported.

PyTensor needs numpy 2 and Theano numpy < 1.24: the two live in separate Python
environments. A run of an engine whose package this Python cannot import goes to the
Python named by the engine's variable (XOR_GPU_THEANO_PYTHON, XOR_GPU_PYTENSOR_PYTHON).
"""
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys

from xor_gpu.errors import ConfigError, DeviceError


@dataclasses.dataclass(frozen=True)
class Engine:
    name: str
    package: str  # the module it imports: theano or pytensor
    devices: str  # a regular expression over device names
    linker: str = ""  # PyTensor's linker: cvm (its C backend), numba or jax
    about: str = ""


ENGINES = {e.name: e for e in (
    Engine("theano", "theano", r"cpu|cuda\d*|opencl\d+:\d+", about="Theano 1.0.5: C on the CPU, libgpuarray on GPUs"),
    Engine("pytensor", "pytensor", r"cpu", "cvm", "PyTensor's C backend (the cvm linker), on the CPU"),
    Engine("pytensor-numba", "pytensor", r"cpu", "numba", "PyTensor compiled by Numba, on the CPU"),
    Engine("pytensor-jax", "pytensor", r"cpu|cuda\d*", "jax", "PyTensor compiled by JAX: the CPU, or an NVIDIA GPU"),
)}
DEFAULT = "theano"
# How to get each package's environment, for the error when it is missing.
INSTALL = {
    "theano": "pip install xor_gpu (Python 3.11), or run tox -e cpu",
    "pytensor": "run `tox -e pytensor` (or make a venv as in README, Engines)",
}


def get(name):
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


def check_pair(engine, device):
    """Refuse an engine on a device it cannot run on, before anything is trained."""
    if not re.fullmatch(get(engine).devices, device):
        where = {"theano": "cpu, cuda or opencl", "pytensor-jax": "cpu or cuda"}.get(engine, "cpu only")
        raise ConfigError(f"engine {engine} cannot run on {device}: it runs on {where}")


def parse_runs(text):
    """[(engine, device)] from "theano:cpu,pytensor-jax:cpu,theano:opencl0:0"; each run once."""
    runs = []
    for part in str(text).split(","):
        engine, sep, device = part.strip().partition(":")
        if not sep or not engine or not device:
            raise ConfigError(f"bad --runs {text!r}: each run is ENGINE:DEVICE, e.g. theano:cpu,pytensor:cpu")
        get(engine)
        from xor_gpu.config import check_device

        check_device(device)
        check_pair(engine, device)
        if (engine, device) in runs:
            raise ConfigError(f"bad --runs {text!r}: {engine}:{device} is given twice")
        runs.append((engine, device))
    if len(runs) < 2:
        raise ConfigError(f"bad --runs {text!r}: parity needs at least two runs")
    return runs


def label(engine, device):
    """How a run is named in reports: the device alone for Theano, as `--devices` names them."""
    return device if engine == DEFAULT else f"{engine}:{device}"


def python_variable(engine):
    return f"XOR_GPU_{get(engine).package.upper()}_PYTHON"


def python_for(engine):
    """The Python that runs `engine`: this one when it can import the engine's package, else
    the one the engine's variable names. DeviceError (exit 3) when neither can."""
    package, variable = get(engine).package, python_variable(engine)
    if importlib.util.find_spec(package) is not None:
        return sys.executable
    named = os.environ.get(variable)
    if not named:
        raise DeviceError(f"engine {engine} is not installed in this Python ({sys.executable}): "
                          f"{INSTALL[package]}, and set {variable} to that environment's python")
    if os.path.isdir(named) or not os.access(named, os.X_OK):
        raise DeviceError(f"engine {engine} is not installed: {variable}={named} is not a Python; {INSTALL[package]}")
    _check_python(engine, variable, named, package)
    return named


_CHECKED = set()


def _check_python(engine, variable, python, package):
    """That Python must import xor_gpu and find the engine's package (once per process: ~0.1 s)."""
    if python in _CHECKED:
        return
    try:
        # Found, not imported: Theano's import needs the flags backend.py sets first.
        code = f"import importlib.util as u, xor_gpu; u.find_spec({package!r}) or exit('no module named {package}')"
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
        problem = proc.returncode and (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem:
        raise DeviceError(f"engine {engine} is not installed: {variable}={python} cannot import xor_gpu and "
                          f"{package} ({problem}); {INSTALL[package]}, with xor_gpu installed there "
                          "(pip install --no-deps .)")
    _CHECKED.add(python)
