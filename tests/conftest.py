"""Fixtures. Tests that need a CUDA GPU skip, saying what is missing, on a machine without
one, and fail instead when XOR_GPU_REQUIRE_GPU=1 (GPU CI runners)."""
import os
import pathlib
import shutil

import pytest

from xor_gpu.compile_cache import compiledir
from xor_gpu.host import cuda_missing
from xorlib import DEVICE, common_folder, require_gpu, second_account


@pytest.fixture(scope="session")
def device():
    """The device under test; skips (or fails under XOR_GPU_REQUIRE_GPU=1) without CUDA."""
    if DEVICE.startswith("cuda"):
        missing = cuda_missing()
        if missing:
            message = f"no usable CUDA GPU for device={DEVICE}: {missing}"
            if require_gpu():
                pytest.fail(f"{message}, and XOR_GPU_REQUIRE_GPU=1 requires one")
            pytest.skip(f"{message}; set XOR_GPU_REQUIRE_GPU=1 to make this a failure")
    return DEVICE


@pytest.fixture
def nan_weights(monkeypatch):
    """Start training from NaN weights: the only way this network's loss becomes NaN
    (its sigmoids saturate for any learning rate that is finite in floatX)."""
    import numpy as np

    from xor_gpu import model

    monkeypatch.setattr(model, "initial_weights", lambda hidden, seed: (np.full((2, hidden), np.nan),
                                                                        np.full((hidden, 1), np.nan)))


@pytest.fixture(scope="session", autouse=True)
def _compiledir_exists():
    os.makedirs(compiledir(), exist_ok=True)


@pytest.fixture(scope="session")
def nobody():
    """A second account (tests/xorlib.py's Account): needs root."""
    return second_account()


@pytest.fixture
def common(nobody):
    """A fresh folder where root and `nobody` both make folders (as /tmp: root's, mode 1777),
    removed after."""
    folder = pathlib.Path(common_folder())
    yield folder
    shutil.rmtree(folder)
