"""The gpu env's skip is honest: with XOR_GPU_REQUIRE_GPU=1 the same tests fail on a
machine without CUDA, naming what is missing (as on a GPU CI runner whose GPU vanished)."""
import os
import subprocess
import sys

from xorlib import without_cuda_gpu


def _device_tests(require):
    env = {**os.environ, "THEANO_FLAGS": "device=cuda,floatX=float32", "XOR_GPU_REQUIRE_GPU": require}
    return subprocess.run([sys.executable, "-m", "pytest", "-m", "device", "-p", "no:cacheprovider",
                           "-k", "graph_runs", os.path.dirname(__file__)],
                          capture_output=True, text=True, env=env)


@without_cuda_gpu
def test_without_gpu_the_cuda_tests_skip_saying_why():
    proc = _device_tests("0")
    assert proc.returncode == 0, proc.stdout
    assert "no usable CUDA GPU for device=cuda: no NVIDIA driver" in proc.stdout
    assert "set XOR_GPU_REQUIRE_GPU=1 to make this a failure" in proc.stdout


@without_cuda_gpu
def test_require_gpu_turns_the_skip_into_a_failure():
    proc = _device_tests("1")
    assert proc.returncode == 1, proc.stdout
    assert "XOR_GPU_REQUIRE_GPU=1 requires one" in proc.stdout
