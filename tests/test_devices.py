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
    assert devices.device(device) is device  # a Device is itself


@pytest.mark.parametrize("name", ["gpu", "opencl0", "cuda:0", "CPU", " cpu", "cpu0", "", None, 0, "opencl0:0 "])
def test_anything_else_is_one_line_of_bad_input(name):
    with pytest.raises(ConfigError, match=r"^unknown device .*: use cpu, cuda, cudaN \(e.g. cuda0\) or openclP:D"):
        devices.device(name)


def test_only_a_cuda_gpu_is_hardware_of_its_own():
    assert [devices.device(n).own_hardware for n in ("cuda", "cuda1", "cpu", "opencl0:0")] == [True, True, False, False]


def test_what_others_report_is_held_against_the_device_here():
    """Theano's config.device, pygpu's context kind, JAX's platform: compared in this module only."""
    cuda1, cpu = devices.device("cuda1"), devices.THE_CPU
    assert cuda1.is_named("cuda1") and not cuda1.is_named("cuda") and not cuda1.is_named("nonsense")
    assert cuda1.has_context_kind(b"cuda") and not cuda1.has_context_kind(b"opencl")
    assert devices.device("opencl0:0").has_context_kind(b"opencl")
    assert (cpu.jax_platform, cuda1.jax_platform) == ("cpu", "gpu") and cuda1.is_jax_platform("gpu")
    assert cpu.of_kinds((CPU,)) and not cuda1.of_kinds((CPU, OPENCL))
    assert (cpu.name, devices.DEFAULT_CUDA.name) == ("cpu", "cuda")
