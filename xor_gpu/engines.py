"""The engine registry: Theano (the seed's) and PyTensor, its maintained successor, with
each of PyTensor's backends, one entry each. An entry carries where the engine runs, its
steps-per-call policy, and its runtime (import, compile mode, graph check, versions, BLAS);
nothing outside this module tells engines apart by name. One model definition
(xor_gpu/model.py) serves them all. An entry names its runtime's class, which is imported
when the engine first starts (and imports its package then): checking input, as every
command does first, loads neither backend, nor Theano or PyTensor.

PyTensor needs numpy 2 and Theano numpy < 1.24: the two live in separate Python
environments. A run of an engine whose package this Python cannot import goes to the
Python named by the engine's variable (XOR_GPU_THEANO_PYTHON, XOR_GPU_PYTENSOR_PYTHON).
"""
import dataclasses
import importlib
import importlib.util
import os
import subprocess
import sys

from xor_gpu.devices import CPU, CUDA, OPENCL
from xor_gpu.devices import device as device_of
from xor_gpu.errors import ConfigError, DeviceError, exit_words

# SGD steps per compiled call of Theano on the CPU (xor_gpu/model.py) unless given: every value
# gives the same result, bitwise; only the speed differs. Seed config, warm, OpenBLAS, 2-core
# machine, medians of 7 interleaved runs: 1, 5, 10, 20, 50 steps per call trained 170k,
# 381k, 441k, 465k, 496k steps/s after 0.12, 0.15, 0.17, 0.22, 0.45 s of compilation (the
# chain is linked node by node), for 0.76, 0.60, 0.60, 0.68, 0.97 s of wall time: 10 has
# most of the speed for little compilation.
CPU_STEPS_PER_CALL = 10
# PyTensor's C backend, the same chain: its step is 10 C thunks (about 1.6 us a chained step,
# the weights updated in place; a one-step call 4.6 us), so the chain stops gaining early:
# 20, 50, 100 steps per call 605-619k, 619-627k, 629-633k steps/s after 0.34, 0.43, 0.67 s of
# compilation (3 rounds). Before the copies updated the weights in place: seed config, 2-core
# machine, only the sampled costs computed, 3 interleaved rounds: 1, 10, 20,
# 50, 100 steps per call trained 227-236k, 547-558k, 590-601k, 569-601k, 552-616k steps/s
# after 0.60-0.66, 0.68-0.72, 0.72-0.82, 0.81-0.90, 1.03-1.08 s of compilation, for 1.87-1.96,
# 1.77-1.87, 1.79-2.06, 1.90-2.12, 2.14-2.26 s of wall time: 20 has the speed, and the wall
# time of one step per call. A scan of its steps ran 256k (its inner function called per step),
# 378k with that function one C module (Mode(linker="c")); a chain as one C module compiled in
# 28 s for 10 steps, and in more than 15 minutes for 100.
C_CHAIN_STEPS_PER_CALL = 20
# The longest call: a chain's compilation grows with its length (Theano: 5 s for 100 steps,
# 162 s for 1,000); a scan's graph is one step whatever its length, but it keeps the cost of
# every step of a call (4 bytes each).
MAX_CHAIN = 1000
MAX_SCAN = 1_000_000


@dataclasses.dataclass(frozen=True)
class Engine:
    """One engine: where it runs, how many steps a compiled call may chain, its Python
    package, and its runtime (a class of backend.py or pytensor_backend.py: the import,
    compile mode, graph check, versions and BLAS of a run)."""

    name: str
    package: str  # the module it imports: theano or pytensor
    kinds: tuple  # the kinds of device it runs on (xor_gpu/devices.py)
    runtime_name: str  # "module:class" of its runtime, imported when first used (runtime)
    # K steps per call (xor_gpu/model.py): "chain", K copies of the optimized step linked into one
    # call; "scan", one scan over K steps, compiled as a loop by Numba or JAX.
    loop: str = "chain"
    chain_steps: int = 1  # a chain's steps per call on the CPU by default (GPUs: 1, below)
    libgpuarray: bool = False  # GPUs through pygpu/libgpuarray: the doctor's stack, cuda_libs' folders
    about: str = ""

    def check_device(self, device):
        """Refuse this engine on a device it cannot run on, before anything is trained."""
        if device_of(device).kind not in self.kinds:
            raise ConfigError(f"engine {self.name} cannot run on {device}: it runs on {self.where}")

    @property
    def where(self):
        """The devices it runs on, for people: "cpu or cuda", "cpu only"."""
        *others, last = self.kinds
        return f"{', '.join(others)} or {last}" if others else f"{last} only"

    def default_steps_per_call(self, device):
        """K unless given, or None: the whole training in as few calls as the loss history and
        the progress bar allow (config.default_steps_per_call), for a scan, whose length costs
        no compilation.

        A chain on a GPU: every step of a call builds kernels of its own (PoCL: 1.1 s more
        compilation per step), and the device's calls bound the speed, not Python: on PoCL the
        four CLBlast GEMM calls of a step take 85% of it (55-92 us each, an elementwise kernel
        4-8 us), and 10 steps per call trained 0.83 times as fast as 1 (50: 0.90), even with
        one transfer of the costs per call."""
        if self.loop == "scan":
            return None
        return device_of(device).steps_per_call(self.chain_steps)

    @property
    def max_steps_per_call(self):
        return MAX_SCAN if self.loop == "scan" else MAX_CHAIN

    @property
    def runtime(self):
        """The runtime's class, its module imported now if it was not yet: the one place
        where a module of the package is imported on demand outside the CLI."""
        module, _, name = self.runtime_name.partition(":")
        return getattr(importlib.import_module(module), name)

    def start(self, device, floatx):
        """Import the engine bound to `device` (DeviceError when that is not the one in use)."""
        return self.runtime(self.name, device, floatx)

    def label(self, device):
        """How a run is named in reports: the device alone for the default engine, as
        `--devices` names them."""
        return device if self.name == DEFAULT else f"{self.name}:{device}"


ENGINES = {e.name: e for e in (
    Engine("theano", "theano", (CPU, CUDA, OPENCL), "xor_gpu.backend:Runtime",
           chain_steps=CPU_STEPS_PER_CALL, libgpuarray=True,
           about="Theano 1.0.5: C on the CPU, libgpuarray on GPUs"),
    Engine("pytensor", "pytensor", (CPU,), "xor_gpu.pytensor_backend:CRuntime", chain_steps=C_CHAIN_STEPS_PER_CALL,
           about="PyTensor's C backend (the cvm linker), on the CPU"),
    Engine("pytensor-numba", "pytensor", (CPU,), "xor_gpu.pytensor_backend:NumbaRuntime", loop="scan",
           about="PyTensor compiled by Numba, on the CPU"),
    Engine("pytensor-jax", "pytensor", (CPU, CUDA), "xor_gpu.pytensor_backend:JaxRuntime", loop="scan",
           about="PyTensor compiled by JAX: the CPU, or an NVIDIA GPU"),
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


def parse_runs(text):
    """[(engine, device)] from "theano:cpu,pytensor-jax:cpu,theano:opencl0:0"; each run once."""
    runs = []
    for part in str(text).split(","):
        engine, sep, device = part.strip().partition(":")
        if not sep or not engine or not device:
            raise ConfigError(f"bad --runs {text!r}: each run is ENGINE:DEVICE, e.g. theano:cpu,pytensor:cpu")
        get(engine).check_device(device)
        if (engine, device) in runs:
            raise ConfigError(f"bad --runs {text!r}: {engine}:{device} is given twice")
        runs.append((engine, device))
    if len(runs) < 2:
        raise ConfigError(f"bad --runs {text!r}: parity needs at least two runs")
    return runs


def label(engine, device):
    return get(engine).label(device)


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
        problem = proc.returncode and (proc.stderr.strip().splitlines() or [exit_words(proc.returncode)])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = str(exc)
    if problem:
        raise DeviceError(f"engine {engine} is not installed: {variable}={python} cannot import xor_gpu and "
                          f"{package} ({problem}); {INSTALL[package]}, with xor_gpu installed there "
                          "(pip install --no-deps .)")
    _CHECKED.add(python)
