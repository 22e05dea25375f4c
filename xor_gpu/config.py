"""The training configuration: defaults that reproduce the seed, and validation of user input.

Everything here is plain Python, so it can be checked before Theano is imported (which
binds the device for the life of the process).
"""
import dataclasses
import math
import re

import numpy as np

from xor_gpu import engines
from xor_gpu.errors import ConfigError

# The XOR data set of the seed, rows in the seed's order.
INPUTS = ((1, 0), (0, 0), (0, 1), (1, 1))
TARGETS = (1, 0, 1, 0)

# Converged: every prediction lies on the right side of 0.5 by at least this margin,
# i.e. |prediction - target| <= 0.5 - CONVERGENCE_MARGIN. The seed config ends with its
# worst row at about 0.12 from its target, well inside 0.25.
CONVERGENCE_MARGIN = 0.25

FLOATX_CHOICES = ("float32", "float64")
# cpu; cuda or cudaN (NVIDIA via libgpuarray); openclP:D (OpenCL platform P, device D).
DEVICE_PATTERN = re.compile(r"cpu|cuda\d*|opencl\d+:\d+")
MAX_STEPS = 10**9
MAX_HIDDEN = 4096
MAX_STEPS_PER_CALL = 1000
MAX_SEEDS = 1000  # seeds in one sweep (parity --seeds, train --seeds)
MAX_SEED = 2**32 - 1  # numpy.random.RandomState's range
# SGD steps per compiled call (xor_gpu/model.py) unless given: every value gives the same
# result, bitwise; only the speed differs. Seed config, warm, OpenBLAS, 2-core machine,
# medians of 7 interleaved runs: 1, 5, 10, 20, 50 steps per call trained 170k, 381k, 441k,
# 465k, 496k steps/s after 0.12, 0.15, 0.17, 0.22, 0.45 s of compilation (the chain is
# linked node by node), for 0.76, 0.60, 0.60, 0.68, 0.97 s of wall time: 10 has most of the
# speed for little compilation.
CPU_STEPS_PER_CALL = 10


def default_steps_per_call(device, engine="theano"):
    """On a GPU every step of a call builds kernels of its own (PoCL: 1.1 s more compilation
    per step), and the device's calls bound the speed, not Python: on PoCL the four CLBlast
    GEMM calls of a step take 85% of it (55-92 us each, an elementwise kernel 4-8 us), and 10
    steps per call trained 0.83 times as fast as 1 (50: 0.90), even with one transfer of
    the costs per call. PyTensor's engines compile one step per call (the chain of steps is
    built from Theano's internals)."""
    return CPU_STEPS_PER_CALL if device == "cpu" and engine == "theano" else 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    device: str = "cpu"
    floatx: str = "float32"
    hidden: int = 3
    lr: float = 0.01
    steps: int = 60_000
    seed: int = 1234
    steps_per_call: int = None  # None: the device's default, default_steps_per_call()
    engine: str = "theano"  # xor_gpu/engines.py

    def __post_init__(self):
        check_device(self.device)
        engines.check_pair(self.engine, self.device)
        if self.engine != "theano" and self.steps_per_call not in (None, 1):
            raise ConfigError(f"--steps-per-call {self.steps_per_call}: engine {self.engine} runs one step per call")
        if self.floatx not in FLOATX_CHOICES:
            raise ConfigError(f"unsupported floatX {self.floatx!r}: choose one of {', '.join(FLOATX_CHOICES)}")
        _check_int("hidden", self.hidden, 1, MAX_HIDDEN)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_int("seed", self.seed, 0, MAX_SEED)
        if self.steps_per_call is not None:
            _check_int("steps_per_call", self.steps_per_call, 1, MAX_STEPS_PER_CALL)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise ConfigError(f"lr must be a number, got {self.lr!r}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"lr must be a finite number > 0, got {self.lr!r}")
        as_floatx = float(np.asarray(self.lr, dtype=self.floatx))
        if not math.isfinite(as_floatx) or as_floatx == 0:
            raise ConfigError(f"lr {self.lr!r} is not representable in {self.floatx}")

    def resolved(self):
        """This config with steps_per_call as it runs on its device."""
        if self.steps_per_call is not None:
            return self
        return self.replace(steps_per_call=default_steps_per_call(self.device, self.engine))

    def to_dict(self):
        return dataclasses.asdict(self)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def row_converged(prediction, target):
    """The convergence rule for one row; a run converged when every row did."""
    return abs(prediction - target) <= 0.5 - CONVERGENCE_MARGIN


def is_converged(predictions):
    return all(row_converged(p, t) for p, t in zip(predictions, TARGETS))


def parse_seeds(text):
    """Seeds from "0-19", "1,5,9" or "0-4,10": ascending ranges and numbers, each seed once."""
    seeds = []
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ConfigError(f"bad --seeds {text!r}: use numbers and ranges, e.g. 0-19 or 1,5,9")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise ConfigError(f"bad --seeds {text!r}: the range {low}-{high} runs backwards")
        if high > MAX_SEED:
            raise ConfigError(f"bad --seeds {text!r}: seeds must be between 0 and {MAX_SEED}")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ConfigError(f"bad --seeds {text!r}: at most {MAX_SEEDS} seeds in one sweep")
        seeds.extend(range(low, high + 1))
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"bad --seeds {text!r}: seed {repeated[0]} is given twice")
    return seeds


def check_device(device):
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ConfigError(
            f"unknown device {device!r}: use cpu, cuda, cudaN (e.g. cuda0) or openclP:D (e.g. opencl0:0)"
        )
    return device


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")

