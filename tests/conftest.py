"""Shared test helpers. The device under test comes from THEANO_FLAGS (device=..., as tox
sets it per env; default cpu). Tests that need a CUDA GPU skip, saying what is missing,
on a machine without one, and fail instead when XOR_GPU_REQUIRE_GPU=1 (GPU CI runners)."""
import json
import os
import subprocess
import sys

import pytest

from xor_gpu.backend import compiledir
from xor_gpu.doctor import cuda_driver


def _flag(name, default):
    for part in os.environ.get("THEANO_FLAGS", "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == name and value.strip():
            return value.strip()
    return default


DEVICE = _flag("device", "cpu")
FLOATX = _flag("floatX", "float32")


def require_gpu():
    return os.environ.get("XOR_GPU_REQUIRE_GPU") == "1"


@pytest.fixture(scope="session")
def device():
    """The device under test; skips (or fails under XOR_GPU_REQUIRE_GPU=1) without CUDA."""
    if DEVICE.startswith("cuda"):
        version, gpus = cuda_driver()
        missing = None
        if version is None:
            missing = "no NVIDIA driver (libcuda.so.1 does not load)"
        elif not gpus:
            missing = f"NVIDIA driver {version} present but it sees no GPU"
        if missing:
            message = f"no usable CUDA GPU for device={DEVICE}: {missing}"
            if require_gpu():
                pytest.fail(f"{message}, and XOR_GPU_REQUIRE_GPU=1 requires one")
            pytest.skip(f"{message}; set XOR_GPU_REQUIRE_GPU=1 to make this a failure")
    return DEVICE


@pytest.fixture(scope="session")
def floatx():
    return FLOATX


def run_cli(*args, env=None, check=None):
    """Run `python -m xor_gpu ARGS` in a fresh process (Theano binds a device per process)."""
    proc = subprocess.run([sys.executable, "-m", "xor_gpu", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def train_report(tmp_path, *args, name="report.json"):
    path = tmp_path / name
    run_cli("train", "--json", path, *args, check=0)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session", autouse=True)
def _compiledir_exists():
    os.makedirs(compiledir(), exist_ok=True)
