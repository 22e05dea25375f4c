"""The training configuration: defaults that reproduce the seed, and validation of user input.

Everything here is plain Python, so it can be checked before Theano is imported (which
binds the device for the life of the process).
"""
import dataclasses
import math
import re

import numpy as np

from xor_gpu import devices, engines
from xor_gpu.errors import ConfigError

FLOATX_CHOICES = ("float32", "float64")
MAX_STEPS = 10**9
MAX_HIDDEN = 4096
MAX_SEEDS = 1000  # seeds in one sweep (parity --seeds, train --seeds)
MAX_SEED = 2**32 - 1  # numpy.random.RandomState's range


def _option(default, help, type=str, metavar=None, where=False):
    """A field of TrainConfig and the command-line option that sets it (--name-with-dashes);
    `where`: a field that says where a run trains (device, engine), which each command asks
    for its own way, rather than how it trains."""
    return dataclasses.field(default=default, metadata={"help": help, "type": type, "metavar": metavar,
                                                        "where": where})


def _flag(name):
    """The command-line option of a TrainConfig field: steps_per_call is --steps-per-call."""
    return f"--{name.replace('_', '-')}"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What a training run is: the one list of its fields, their defaults (the seed's), the
    options that set them (add_options) and the arguments that pass them to a child process
    (to_argv), and their validation (here, once, whoever builds one)."""

    device: devices.Device = _option("cpu", "cpu, cuda, cudaN or openclP:D", where=True)  # a name given: read
    floatx: str = _option("float32", "Theano floatX")
    hidden: int = _option(3, "hidden units", int)
    lr: float = _option(0.01, "learning rate", float)
    steps: int = _option(60_000, "gradient steps", int)
    seed: int = _option(1234, "RandomState seed", int)
    steps_per_call: int = _option(  # None: the engine's default on the device (Engine.default_steps_per_call)
        None, f"SGD steps per compiled call; every K gives the same result (default: theano "
              f"{engines.CPU_STEPS_PER_CALL} on cpu, 1 on GPUs; pytensor {engines.C_CHAIN_STEPS_PER_CALL}; "
              f"pytensor-numba and pytensor-jax the whole training in {engines.PROGRESS_CALLS} calls)", int, "K")
    engine: str = _option(engines.DEFAULT, f"{', '.join(engines.ENGINES)} (README: Engines)",  # engines.py
                          where=True)

    @classmethod
    def training(cls):
        """The names of the fields that say how a run trains (every one but where it trains)."""
        return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata["where"])

    @classmethod
    def add_options(cls, parser, names, groups=None):
        """Add --NAME for each field in `names` to an argparse parser (a field's option may go
        into a group of `groups`, e.g. a mutually exclusive one), its default the field's."""
        for field in (f for f in dataclasses.fields(cls) if f.name in names):
            meta, target = field.metadata, (groups or {}).get(field.name, parser)
            default = "" if field.default is None else f" (default {field.default})"
            target.add_argument(_flag(field.name), type=meta["type"], default=field.default,
                                metavar=meta["metavar"], help=meta["help"] + default)

    @classmethod
    def from_args(cls, args, **given):
        """The config of parsed options: the fields `args` has, then those `given`."""
        found = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        return cls(**{**found, **given})

    def to_argv(self, leave_out=()):
        """`xor-gpu train` options that give a child process this config (the fields whose
        value is None, and those named in `leave_out`, are left to the child's defaults)."""
        argv = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and field.name not in leave_out:
                argv += [_flag(field.name), str(value)]  # a float's str is its repr
        return argv

    def __post_init__(self):
        object.__setattr__(self, "device", devices.device(self.device))  # the one reading of its name
        engine = engines.get(self.engine)
        engine.check_device(self.device)
        if self.floatx not in FLOATX_CHOICES:
            raise ConfigError(f"unsupported floatX {self.floatx!r}: choose one of {', '.join(FLOATX_CHOICES)}")
        _check_int("hidden", self.hidden, 1, MAX_HIDDEN)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_int("seed", self.seed, 0, MAX_SEED)
        if self.steps_per_call is not None:
            _check_int("steps_per_call", self.steps_per_call, 1, engine.max_steps_per_call)
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
        return self.replace(steps_per_call=engines.get(self.engine).default_steps_per_call(self.device, self.steps))

    def to_dict(self):
        """Its fields as reports keep them, the device by its name."""
        return {f.name: str(self.device) if f.name == "device" else getattr(self, f.name)
                for f in dataclasses.fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


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


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")

