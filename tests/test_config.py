"""Validation of user input, before Theano is ever imported."""
import math
import re

import pytest

from xor_gpu.config import TrainConfig, parse_seeds
from xor_gpu.devices import Device
from xor_gpu.errors import ConfigError


def test_defaults_reproduce_the_seed():
    c = TrainConfig()
    assert (c.device.name, c.floatx, c.hidden, c.lr, c.steps, c.seed) == ("cpu", "float32", 3, 0.01, 60_000, 1234)


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda0", "cuda12", "opencl0:0", "opencl1:2"])
def test_a_device_name_is_read_once_into_a_device(device):
    """The config is where a name enters: it holds the Device from then on, and gives the name
    back only where a report or a child's arguments need text."""
    config = TrainConfig(device=device)
    assert isinstance(config.device, Device) and config.device.name == device
    assert config.to_dict()["device"] == device and config.to_argv()[:2] == ["--device", device]
    assert TrainConfig(device=config.device) == config == config.replace(device=device)


@pytest.mark.parametrize("device", ["gpu", "gpu0", "CUDA", "cuda-0", "opencl0", "opencl:0", "", "cpu ", None])
def test_devices_rejected(device):
    with pytest.raises(ConfigError, match="unknown device"):
        TrainConfig(device=device)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": 0}, "steps must be between"),
        ({"steps": -5}, "steps must be between"),
        ({"steps": 1.5}, "steps must be an integer"),
        ({"steps": True}, "steps must be an integer"),
        ({"hidden": 0}, "hidden must be between"),
        ({"hidden": "3"}, "hidden must be an integer"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": -0.1}, "lr must be a finite number > 0"),
        ({"lr": math.nan}, "lr must be a finite number > 0"),
        ({"lr": math.inf}, "lr must be a finite number > 0"),
        ({"lr": "0.1"}, "lr must be a number"),
        ({"lr": 1e39}, "not representable in float32"),
        ({"lr": 1e-50}, "not representable in float32"),
        ({"seed": -1}, "seed must be between"),
        ({"seed": 2**32}, "seed must be between"),
        ({"floatx": "float16"}, "unsupported floatX"),
        ({"steps_per_call": 0}, "steps_per_call must be between 1 and 1000"),
        ({"steps_per_call": 1001}, "steps_per_call must be between 1 and 1000"),
        ({"steps_per_call": 2.0}, "steps_per_call must be an integer"),
    ],
)
def test_bad_values_are_one_line_errors(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        TrainConfig(**change)
    assert "\n" not in str(info.value)


def test_lr_range_depends_on_floatx():
    assert TrainConfig(lr=1e39, floatx="float64").lr == 1e39


@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("7", [7]), ("3,1,2", [3, 1, 2]),
                                         ("0-2, 10", [0, 1, 2, 10]), ("0-999", list(range(1000)))])
def test_seed_lists_accepted(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [
    ("", "use numbers and ranges"), ("1,,2", "use numbers and ranges"), ("a-b", "use numbers and ranges"),
    ("-1", "use numbers and ranges"), ("1.5", "use numbers and ranges"), ("5-2", "the range 5-2 runs backwards"),
    ("1,2,1", "seed 1 is given twice"), ("0-9,5", "seed 5 is given twice"), ("0-1000", "at most 1000 seeds"),
    ("0-4294967296", "seeds must be between 0 and 4294967295"),
])
def test_seed_lists_rejected(text, message):
    with pytest.raises(ConfigError, match=f"^bad --seeds {re.escape(repr(text))}: {message}"):
        parse_seeds(text)
