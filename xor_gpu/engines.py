"""The engine registry: Theano (the seed's) and PyTensor, its maintained successor, with
each of PyTensor's backends, one entry each. An entry carries where the engine runs, its
steps-per-call rule, and its runtime (import, compile mode, graph check, versions, BLAS);
nothing outside this module tells engines apart by name. One model definition
(xor_gpu/model.py) serves them all. An entry names its runtime's class, which is imported
when the engine first starts (and imports its package then): checking input, as every
command does first, loads neither backend, nor Theano or PyTensor. Which Python runs an
engine is xor_gpu/engine_python.py's.
"""
import dataclasses
import importlib
import math

from xor_gpu.devices import CPU, CUDA, OPENCL
from xor_gpu.devices import device as device_of
from xor_gpu.errors import ConfigError

# SGD steps per compiled call of a chain on the CPU (xor_gpu/model.py) unless given: every
# value gives the same result, bitwise; only the speed differs. Why these (the measurements):
# benchmarks/README.md, "Steps per call: the defaults".
CPU_STEPS_PER_CALL = 10  # Theano
C_CHAIN_STEPS_PER_CALL = 20  # PyTensor's C backend
# The longest call: a chain's compilation grows with its length (Theano: 5 s for 100 steps,
# 162 s for 1,000); a scan's graph is one step whatever its length, but it keeps the cost of
# every step of a call (4 bytes each).
MAX_CHAIN = 1000
MAX_SCAN = 1_000_000
HISTORY_POINTS = 500  # a loss sample every steps/500 steps: enough for a curve, small JSON
# A training whose length is free (a scan) runs in this many calls, the progress bar moving by
# 1% per call; the first call, which also compiles (JAX, Numba), is 1% of the steps and left
# out of steps/s.
PROGRESS_CALLS = 100


def history_every(steps):
    """Steps between two samples of the loss history."""
    return max(1, steps // HISTORY_POINTS)


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
        """Refuse this engine on a device (a Device) it cannot run on, before anything is trained."""
        if not device.of_kinds(self.kinds):
            raise ConfigError(f"engine {self.name} cannot run on {device}: it runs on {self.where}")

    @property
    def where(self):
        """The devices it runs on, for people: "cpu or cuda", "cpu only"."""
        *others, last = self.kinds
        return f"{', '.join(others)} or {last}" if others else f"{last} only"

    def default_steps_per_call(self, device, steps):
        """SGD steps per compiled call on `device` (a Device) for a training of `steps`, unless
        given: the one rule. A chain: chain_steps on the CPU, 1 on a GPU, where every step of a
        call builds kernels of its own and the device's calls, not Python, bound the speed. A
        scan, whose length costs no compilation: whole sampling intervals of the loss history,
        in PROGRESS_CALLS calls (each returning the costs the history samples)."""
        if self.loop == "chain":
            return self.chain_steps if device.is_cpu else 1
        every = history_every(steps)
        return min(every * math.ceil(steps // every / PROGRESS_CALLS), MAX_SCAN)

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
        return str(device) if self.name == DEFAULT else f"{self.name}:{device}"


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
# How to get each package's environment, for the error when it is missing (engine_python).
INSTALL = {
    "theano": "pip install xor_gpu (Python 3.11), or run tox -e cpu",
    "pytensor": "run `tox -e pytensor` (or make a venv as in README, Engines)",
}


def get(name):
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
    return ENGINES[name]


def parse_runs(text):
    """{label: (engine, Device)} from "theano:cpu,pytensor-jax:cpu,theano:opencl0:0", in order
    (labels as label() makes them); each run once."""
    runs = {}
    for part in str(text).split(","):
        engine, sep, name = part.strip().partition(":")
        if not sep or not engine or not name:
            raise ConfigError(f"bad --runs {text!r}: each run is ENGINE:DEVICE, e.g. theano:cpu,pytensor:cpu")
        device = device_of(name)
        get(engine).check_device(device)
        if label(engine, device) in runs:
            raise ConfigError(f"bad --runs {text!r}: {engine}:{device} is given twice")
        runs[label(engine, device)] = engine, device
    if len(runs) < 2:
        raise ConfigError(f"bad --runs {text!r}: parity needs at least two runs")
    return runs


def label(engine, device):
    return get(engine).label(device)
