"""Device names, checked before anything binds one: cpu; cuda or cudaN (NVIDIA, through
libgpuarray or JAX); openclP:D (OpenCL platform P, device D). Which engine runs on which
device is the engine registry's (xor_gpu/engines.py)."""
import re

from xor_gpu.errors import ConfigError

DEVICE_PATTERN = re.compile(r"cpu|cuda\d*|opencl\d+:\d+")


def check_device(device):
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ConfigError(
            f"unknown device {device!r}: use cpu, cuda, cudaN (e.g. cuda0) or openclP:D (e.g. opencl0:0)"
        )
    return device


def own_hardware(device):
    """Whether `device` computes on hardware of its own, beside the CPU's cores: a CUDA GPU.
    OpenCL devices are taken to be the CPU's (PoCL), as the machines this runs on have them;
    a run there and a CPU run at once would share the cores."""
    return check_device(device).startswith("cuda")
