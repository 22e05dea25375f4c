"""Device names: read in one place (xor_gpu/devices.py), into a Device value that says what the
name means; anything else is one line of bad input."""
import pytest

from xor_gpu import devices
from xor_gpu.devices import CPU, CUDA, OPENCL, Device
from xor_gpu.errors import ConfigError


@pytest.mark.parametrize("name, kind, index, platform", [
    ("cpu", CPU, None, None), ("cuda", CUDA, None, None), ("cuda1", CUDA, 1, None), ("cuda12", CUDA, 12, None),
    ("opencl0:0", OPENCL, 0, 0), ("opencl10:2", OPENCL, 2, 10)])
def test_a_name_is_read_into_what_it_means(name, kind, index, platform):
    device = devices.device(name)
    assert device == Device(name, kind, index, platform) and str(device) == name
    assert (device.is_cpu, device.is_cuda, device.is_opencl) == (kind == CPU, kind == CUDA, kind == OPENCL)
    assert devices.check_device(name) == name


@pytest.mark.parametrize("name", ["gpu", "opencl0", "cuda:0", "CPU", " cpu", "cpu0", "", None, 0, "opencl0:0 "])
def test_anything_else_is_one_line_of_bad_input(name):
    with pytest.raises(ConfigError, match=r"^unknown device .*: use cpu, cuda, cudaN \(e.g. cuda0\) or openclP:D"):
        devices.device(name)


def test_only_a_cuda_gpu_is_hardware_of_its_own_and_only_the_cpu_chains_steps():
    assert [devices.device(n).own_hardware for n in ("cuda", "cuda1", "cpu", "opencl0:0")] == [True, True, False, False]
    assert [devices.device(n).steps_per_call(10) for n in ("cpu", "cuda", "opencl0:0")] == [10, 1, 1]
